"""Adversarial interleavings of a new eSIM's money (docs/provisioning.md, "Refunds"): an operator's
partial refund before the order fails, a refund whose answer comes back through reconciliation,
and an account closed while its paid order is still being placed. Real localstripe and SM-DP+
stand-in."""

import pytest
from django.utils import timezone

from accounts.models import Line
from payments.models import Charge
from payments.services import on_session, refunds
from provisioning import services
from provisioning.models import ProfileOrder
from renewals.services import account_closure

pytestmark = pytest.mark.django_db(transaction=True)


def buy(customer, package, card) -> Charge:
    return on_session.purchase_new_line(user=customer, package=package, payment_method_id=card.id)


def test_an_operator_partial_refund_then_a_failed_order_refunds_the_rest(smdp, customer, package, card):
    """Operator gives part back (goodwill) while the order waits; the SM-DP+ then has no profile:
    the customer has no eSIM, so the rest must go back too, not be kept."""
    charge = buy(customer, package, card)
    order = ProfileOrder.objects.get(charge=charge)
    refunds.refund_charge(charge_id=charge.pk, amount_minor=100)

    smdp.fail("no_profile")
    order = services.advance_order(order_id=order.pk)

    assert order.status == ProfileOrder.Status.FAILED
    charge.refresh_from_db()
    assert charge.refunded_minor == charge.amount_minor
    assert charge.status == Charge.Status.REFUNDED


def test_reconciling_refunds_of_a_failed_order_keeps_it_refund_due(smdp, customer, package, card):
    """The order failed and its charge is refund_due, but the after-commit refund was lost (a
    crash, or the processor down). A reconciliation of the charge's refunds (a late charge.refunded
    webhook, the in-doubt sweep) must not turn it back into a kept payment."""
    charge = buy(customer, package, card)
    order = ProfileOrder.objects.get(charge=charge)
    refunds.refund_charge(charge_id=charge.pk, amount_minor=100)  # the refund the webhook reports
    smdp.fail("no_profile")
    # The failure commits refund_due; its after-commit refund does not happen (worker killed).
    order.status = ProfileOrder.Status.FAILED
    order.save(update_fields=["status"])
    Charge.objects.filter(pk=charge.pk).update(status=Charge.Status.REFUND_DUE, failure_code="esim_not_provisioned")

    refunds.reconcile_refunds(charge_id=charge.pk)

    charge.refresh_from_db()
    assert charge.status == Charge.Status.REFUND_DUE
    assert refunds.refund_due_charges() == [charge.pk]
    charge.refresh_from_db()
    assert (charge.status, charge.refunded_minor) == (Charge.Status.REFUNDED, charge.amount_minor)


def test_an_account_closed_while_its_order_waits_gets_no_live_line_and_its_money_back(smdp, customer, package, card):
    """Paid, the SM-DP+ down; the customer closes the account (nothing is in flight at the
    processor, so closure goes through). When the SM-DP+ is back, the worker must not release a
    profile and create a live line for an erased person: the order ends and the money goes back."""
    smdp.fail("down")
    charge = buy(customer, package, card)
    order = services.advance_order(order_id=ProfileOrder.objects.get(charge=charge).pk)
    assert order.status == ProfileOrder.Status.PENDING

    account_closure.close_account(user=customer, actor=None, closed_by="customer", reason="", now=timezone.now())

    smdp.fail("ok")
    services.sweep_orders(now=order.next_attempt_at + timezone.timedelta(seconds=1))

    order.refresh_from_db()
    assert order.status not in ProfileOrder.OPEN
    assert order.status != ProfileOrder.Status.RELEASED
    assert not Line.objects.filter(owner=customer).exclude(status=Line.Status.TERMINATED).exists()
    charge.refresh_from_db()
    assert (charge.status, charge.refunded_minor) == (Charge.Status.REFUNDED, charge.amount_minor)


def test_an_account_closed_after_download_ordered_cancels_the_profile_at_the_smdp(smdp, customer, package, card):
    """The same with DownloadOrder already placed: the profile reserved for the order is cancelled
    at the SM-DP+ (CancelOrder), not confirmed and released."""
    charge = buy(customer, package, card)
    order = services.advance_order(order_id=ProfileOrder.objects.get(charge=charge).pk, max_steps=1)
    assert order.status == ProfileOrder.Status.DOWNLOAD_ORDERED

    account_closure.close_account(user=customer, actor=None, closed_by="customer", reason="", now=timezone.now())
    services.sweep_orders()

    order.refresh_from_db()
    assert order.status == ProfileOrder.Status.CANCELLED
    assert [c["function"] for c in smdp.calls()] == ["downloadOrder", "cancelOrder"]
    assert not Line.objects.filter(owner=customer).exists()
    charge.refresh_from_db()
    assert charge.status == Charge.Status.REFUNDED


def test_a_failed_orders_refund_that_the_bank_later_fails_is_owed_again_not_kept(smdp, customer, package, card):
    """The ledger says a failed order's purchase was refunded, the processor later shows no refund
    (the refund failed at the bank; charge.refund.updated): reconciliation must put the charge
    back to refund_due, which the sweep sends again, never to succeeded (money kept for an eSIM
    the customer never got)."""
    smdp.fail("down")
    charge = buy(customer, package, card)
    order = ProfileOrder.objects.get(charge=charge)
    ProfileOrder.objects.filter(pk=order.pk).update(status=ProfileOrder.Status.FAILED)
    # What the ledger believed after the refund call; localstripe holds no refund of the intent.
    Charge.objects.filter(pk=charge.pk).update(
        status=Charge.Status.REFUNDED, refunded_minor=charge.amount_minor, failure_code="esim_not_provisioned"
    )

    charge = refunds.reconcile_refunds(charge_id=charge.pk)

    assert (charge.status, charge.refunded_minor) == (Charge.Status.REFUND_DUE, 0)
    assert refunds.refund_due_charges() == [charge.pk]
