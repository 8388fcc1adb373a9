"""Adversarial review: money-terms merged with money-precedence (scratch merge, conflicts resolved
by keeping both sides). Passes on money-terms alone; fails once both are merged."""

from django.utils import timezone

from accounts.models import Line
from payments.models import Charge
from renewals.models import Renewal
from renewals.services import charging, dispatcher, outcomes
from tests.renewals.test_charging import THREE_D_SECURE_CARD
from tests.renewals.test_money_seams import failed_cycle, pay_now


def test_a_customers_pay_now_waiting_for_3ds_on_a_failed_renewal_is_not_withdrawn_by_the_next_dispatcher_tick(
    rule, add_card
):
    """money-terms: a pay-now leaves the failed renewal `failed` while the customer is at the bank's
    3-D Secure page. money-precedence: every tick withdraws REQUIRES_ACTION charges of `failed`
    renewals (abandoned_authentications + reconcile_charge, CLOSED_WITHOUT_PAYMENT). Together: the
    customer of a suspended line trying to pay has their payment cancelled under them within a
    tick, and the line stays suspended."""
    import stripe
    from django.conf import settings

    from payments.services import on_session
    from tests.payments.conftest import authenticate_as_browser

    renewal = failed_cycle(rule, suspend_at=timezone.now(), suspended=True)
    waiting = pay_now(renewal, add_card(THREE_D_SECURE_CARD))
    assert waiting.status == Charge.Status.REQUIRES_ACTION

    dispatcher.run_dispatcher(now=timezone.now(), enqueue=False)  # one beat tick while the customer is at the bank

    intent = stripe.PaymentIntent.retrieve(waiting.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY)
    assert intent["status"] == "requires_action"
    assert authenticate_as_browser(intent["id"], intent["client_secret"]).status_code == 200
    on_session.complete_authentication(user=rule.line.owner, charge_id=waiting.pk)
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE


def test_a_refund_of_money_paid_after_its_cycle_closed_that_the_processor_later_fails_goes_back_to_refund_due(
    rule, add_card, monkeypatch, django_capture_on_commit_callbacks
):
    """money-terms refunds a late success as `refund_due` -> `refunded`, next to the charge that
    paid the renewal. money-precedence's reconcile_refunds (sweep, charge.refunded /
    charge.refund.updated webhooks) recomputes status from the processor's refunds: with the
    refund failed at the processor (refunded_total 0) it writes the stray charge back to
    `succeeded`: a second succeeded charge for one renewal (the partial unique index refuses it:
    IntegrityError in the webhook, retried forever), and nothing re-sends the refund."""
    from datetime import timedelta

    import pytest
    from django.db import IntegrityError

    from payments import gateways
    from payments.services import refunds
    from tests.renewals.test_charging import claimed

    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    customer_id = gateways.ensure_customer(rule.line.owner).id
    pm_id = gateways.default_payment_method_id(rule.line.owner)
    slow = charging.prepare_charge(
        renewal_id=renewal.pk, customer_id=customer_id, payment_method_id=pm_id, now=now
    ).charge
    later = now + timedelta(minutes=11)
    dispatcher.run_dispatcher(now=later, enqueue=False)  # closed as never sent; the renewal is claimed again
    assert Charge.objects.get(pk=slow.pk).failure_code == "not_sent"
    assert charging.charge_renewal(renewal_id=renewal.pk, now=later).status == Renewal.Status.SUCCEEDED
    outcome = gateways.charge_off_session(
        charge=slow, customer_id=customer_id, payment_method_id=pm_id
    )  # the slow request lands
    with django_capture_on_commit_callbacks(execute=True):
        outcomes.record_charge_outcome(charge_id=slow.pk, outcome=outcome, now=timezone.now())
    late = Charge.objects.get(pk=slow.pk)
    assert late.status == Charge.Status.REFUNDED

    monkeypatch.setattr(gateways, "refunded_total", lambda payment_intent_id: 0)  # the refund failed at the bank
    try:
        refunds.reconcile_refunds(charge_id=late.pk)
    except IntegrityError as exc:
        pytest.fail(f"reconcile_refunds tried to make the refunded stray charge succeeded again: {exc}")
    late.refresh_from_db()
    assert Charge.objects.filter(renewal=renewal, status=Charge.Status.SUCCEEDED).count() == 1
    assert late.status == Charge.Status.REFUND_DUE
