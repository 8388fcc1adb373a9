"""Operator refunds against localstripe: capped at what is left (localstripe itself would
over-refund), through the admin action."""

import pytest
import stripe
from django.contrib import admin
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import RequestFactory

from console.admin.payments import ChargeAdmin
from payments.models import Charge
from payments.services import errors, refunds
from tests.builders import make_charge, make_user


def refunded_at_stripe(charge) -> int:
    return sum(r["amount"] for r in stripe.Refund.list(payment_intent=charge.payment_intent_id)["data"])


def test_partial_then_remaining_refund(paid_charge):
    refunds.refund_charge(charge_id=paid_charge.pk, amount_minor=1000)
    paid_charge.refresh_from_db()
    assert (paid_charge.status, paid_charge.refunded_minor) == (Charge.Status.SUCCEEDED, 1000)
    refunds.refund_charge(charge_id=paid_charge.pk)
    paid_charge.refresh_from_db()
    assert (paid_charge.status, paid_charge.refunded_minor) == (Charge.Status.REFUNDED, 9800)
    assert refunded_at_stripe(paid_charge) == 9800


def test_no_refund_beyond_the_amount(paid_charge):
    with pytest.raises(errors.PaymentError):
        refunds.refund_charge(charge_id=paid_charge.pk, amount_minor=9801)
    refunds.refund_charge(charge_id=paid_charge.pk)
    with pytest.raises(errors.PaymentError):
        refunds.refund_charge(charge_id=paid_charge.pk)
    assert refunded_at_stripe(paid_charge) == 9800


def test_failed_charges_are_not_refundable(customer, line, package):
    charge = make_charge(
        user=customer, line=line, package=package, status=Charge.Status.FAILED, payment_intent_id="pi_failed"
    )
    with pytest.raises(errors.PaymentError):
        refunds.refund_charge(charge_id=charge.pk)


def test_admin_action_refunds_and_reports(paid_charge, customer, line, package):
    failed = make_charge(user=customer, line=line, package=package, status=Charge.Status.FAILED)
    operator = make_user(email="ops@example.com", is_staff=True, is_superuser=True)
    request = RequestFactory().post("/admin/payments/charge/")
    request.user = operator
    request.session = {}
    request._messages = FallbackStorage(request)
    ChargeAdmin(Charge, admin.site).refund_in_full(
        request, Charge.objects.filter(pk__in=[paid_charge.pk, failed.pk]).order_by("pk")
    )
    texts = [str(m) for m in request._messages]
    assert f"Charge {paid_charge.pk} refunded." in texts
    assert any(t.startswith(f"Charge {failed.pk}:") for t in texts)
    paid_charge.refresh_from_db()
    assert paid_charge.status == Charge.Status.REFUNDED
