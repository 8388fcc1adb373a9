"""When the customer's time for 3-D Secure runs out, the cycle fails only with its PaymentIntent
withdrawn at the processor: the old email's link can then charge nothing next to a later attempt
(a new default card wakes the failed cycle). If the customer paid just before the window closed,
the success is recorded instead of a failure. Against the real localstripe."""

import io
from datetime import timedelta

import time_machine
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Line
from payments.models import Charge
from renewals.models import Renewal
from renewals.services import charging, claims, dispatcher, rules
from tests.payments.conftest import authenticate_as_browser

from .conftest import payment_intents_for
from .test_authentication import waiting_for_3ds


def test_a_3ds_timeout_withdraws_the_intent_so_the_old_link_cannot_pay_next_to_the_new_card(rule, policy, add_card):
    renewal = waiting_for_3ds(rule, add_card)
    [old_intent] = payment_intents_for(renewal)

    with time_machine.travel(renewal.suspend_at + timedelta(seconds=1), tick=False):
        call_command("renewals_tick", stdout=io.StringIO())
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.FAILED and renewal.last_failure_code == "authentication_timeout"
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["canceled"]

    # A new default card wakes the failed cycle, which is charged once more...
    add_card("4242424242424242")
    now = timezone.now() + timedelta(days=2)
    woken = rules.payment_method_changed(user=rule.line.owner, now=now)
    assert woken == [renewal.pk]
    claims.claim_due_renewals(now=now, renewal_ids=[renewal.pk])
    renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)
    assert renewal.status == Renewal.Status.SUCCEEDED

    # ... and the old email's link, followed afterwards, is refused by the processor.
    assert authenticate_as_browser(old_intent["id"], old_intent["client_secret"]).status_code >= 400
    assert sorted(pi["status"] for pi in payment_intents_for(renewal)) == ["canceled", "succeeded"]
    assert Charge.objects.filter(renewal=renewal, status__in=Charge.MONEY_TAKEN).count() == 1


def test_a_3ds_payment_made_just_before_the_window_closed_is_recorded_not_failed(rule, policy, add_card):
    renewal = waiting_for_3ds(rule, add_card)
    [intent] = payment_intents_for(renewal)
    data_before = Line.objects.get(pk=rule.line_id).data_remaining_bytes
    # Paid at the bank; the webhook has not reached us when the window closes.
    assert authenticate_as_browser(intent["id"], intent["client_secret"]).status_code == 200

    with time_machine.travel(renewal.suspend_at + timedelta(seconds=1), tick=False):
        call_command("renewals_tick", stdout=io.StringIO())
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert Charge.objects.get(renewal=renewal).status == Charge.Status.SUCCEEDED
    line = Line.objects.get(pk=rule.line_id)
    assert line.status == Line.Status.ACTIVE
    assert line.data_remaining_bytes == data_before + rule.package.data_allowance_bytes


def test_a_3ds_timeout_while_the_processor_is_unreachable_leaves_the_cycle_waiting_until_the_intent_is_withdrawn(
    rule, policy, add_card, settings
):
    from payments import gateways

    renewal = waiting_for_3ds(rule, add_card)
    api_base = settings.STRIPE_API_BASE
    later = renewal.suspend_at + timedelta(seconds=1)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # a closed port: the cancel cannot get through
    gateways.configure()
    try:
        dispatcher.run_dispatcher(now=later, enqueue=False)
    finally:
        settings.STRIPE_API_BASE = api_base
        gateways.configure()
    renewal.refresh_from_db()
    # Not failed with an intent the customer could still pay: failing waits for the withdrawal.
    assert renewal.status == Renewal.Status.REQUIRES_ACTION
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["requires_action"]

    dispatcher.run_dispatcher(now=later + timedelta(minutes=1), enqueue=False)
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.FAILED
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["canceled"]
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.SUSPENDED
