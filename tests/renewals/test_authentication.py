"""A renewal waiting for the customer's 3-D Secure, against the real localstripe: it times out into
a failed cycle and a suspended line on the policy's clock, and turning the rule off withdraws its
PaymentIntent at the processor, unless the customer paid first."""

import io
from datetime import timedelta

import time_machine
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import Line, NetworkCommand
from payments.models import Charge
from payments.services import on_session
from renewals.models import Alert, Renewal, RenewalRule
from renewals.services import charging, dispatcher, pay_now, reconciliation, rules
from tests.payments.conftest import authenticate_as_browser

from .conftest import payment_intents_for, send_owed_emails
from .test_charging import THREE_D_SECURE_CARD, claimed


def waiting_for_3ds(rule, add_card) -> Renewal:
    add_card(THREE_D_SECURE_CARD)
    now = timezone.now()
    renewal = charging.charge_renewal(renewal_id=claimed(rule, now).pk, now=now)
    assert renewal.status == Renewal.Status.REQUIRES_ACTION
    return renewal


def test_3ds_not_completed_in_the_policys_time_fails_the_renewal_and_suspends_the_line(
    rule, policy, add_card, customer_client
):
    policy.authentication_hours = 48
    policy.save()
    renewal = waiting_for_3ds(rule, add_card)
    deadline = renewal.suspend_at
    assert deadline == Charge.objects.get(renewal=renewal).sent_at + timedelta(hours=48)
    send_owed_emails()
    assert "Please pay by" in mail.outbox[-1].body  # the customer is told by when

    with time_machine.travel(deadline - timedelta(minutes=1), tick=False):
        call_command("renewals_tick", stdout=io.StringIO())
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.REQUIRES_ACTION
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE

    with time_machine.travel(deadline + timedelta(seconds=1), tick=False):
        out = io.StringIO()
        call_command("renewals_tick", stdout=out)
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.FAILED and renewal.last_failure_code == "authentication_timeout"
    assert f"suspended the line of 1 failed renewal(s): [{renewal.pk}]" in out.getvalue()
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.SUSPENDED
    assert list(NetworkCommand.objects.filter(line_id=rule.line_id).values_list("command", flat=True)) == ["suspend"]
    assert Alert.objects.filter(line_id=rule.line_id, kind=Alert.Kind.RENEWAL_FAILED).exists()
    suspended = mail.outbox[-1]
    assert suspended.subject == f"Line {rule.line.iccid} is suspended"
    assert "did not come in time" in suspended.body and f"/payments/renewals/{renewal.pk}/pay/" in suspended.body
    banner = customer_client.get(reverse("accounts:line_detail", args=[rule.line_id])).content.decode()
    assert "was not confirmed with your bank in time" in banner

    # Paying afterwards (the pay-now page, a card without 3-D Secure) restores the line at once.
    good = add_card("4242424242424242")
    charge = pay_now.pay_renewal_now(user=rule.line.owner, renewal=renewal, payment_method_id=good.id)
    assert charge.status == Charge.Status.SUCCEEDED
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.resumed_line
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE
    assert list(
        NetworkCommand.objects.filter(line_id=rule.line_id).order_by("id").values_list("command", flat=True)
    ) == ["suspend", "resume"]
    assert [pi["status"] for pi in payment_intents_for(renewal)].count("succeeded") == 1


def test_a_window_set_in_seconds_replaces_the_policys_hours(rule, policy, add_card, settings):
    """RENEWALS_AUTHENTICATION_WINDOW_SECONDS (the chaos run's short window) wins over the policy."""
    policy.authentication_hours = 48
    policy.save()
    settings.RENEWALS_AUTHENTICATION_WINDOW = timedelta(seconds=30)
    renewal = waiting_for_3ds(rule, add_card)
    assert renewal.suspend_at == Charge.objects.get(renewal=renewal).sent_at + timedelta(seconds=30)


def test_turning_the_rule_off_during_3ds_cancels_the_intent_so_a_late_confirmation_charges_nothing(rule, add_card):
    renewal = waiting_for_3ds(rule, add_card)
    [intent] = payment_intents_for(renewal)
    data_before = Line.objects.get(pk=rule.line_id).data_remaining_bytes
    rules.turn_off_rule(rule=rule, now=timezone.now())
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["canceled"]
    assert Charge.objects.get(renewal=renewal).status == Charge.Status.FAILED

    # The bank's page the customer left open: confirming now is refused by the processor.
    assert authenticate_as_browser(intent["id"], intent["client_secret"]).status_code >= 400
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["canceled"]
    dispatcher.run_dispatcher(now=timezone.now() + timedelta(hours=1), enqueue=False)
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED
    assert Line.objects.get(pk=rule.line_id).data_remaining_bytes == data_before


def test_a_3ds_payment_completed_just_before_the_rule_went_off_wins_and_the_rule_stays_off(rule, add_card):
    renewal = waiting_for_3ds(rule, add_card)
    [intent] = payment_intents_for(renewal)
    data_before = Line.objects.get(pk=rule.line_id).data_remaining_bytes
    # Paid at the bank; its webhook has not reached us when the customer turns the rule off.
    assert authenticate_as_browser(intent["id"], intent["client_secret"]).status_code == 200
    rules.turn_off_rule(rule=rule, now=timezone.now())
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert Charge.objects.get(renewal=renewal).status == Charge.Status.SUCCEEDED
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["succeeded"]
    assert Line.objects.get(pk=rule.line_id).data_remaining_bytes == data_before + rule.package.data_allowance_bytes
    assert RenewalRule.objects.get(pk=rule.pk).enabled is False


def test_an_intent_the_processor_did_not_let_us_cancel_is_withdrawn_by_the_next_tick(rule, add_card, settings):
    renewal = waiting_for_3ds(rule, add_card)
    api_base = settings.STRIPE_API_BASE
    from payments import gateways

    # The processor unreachable while the rule goes off (a closed port, no patching).
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    gateways.configure()
    try:
        rules.turn_off_rule(rule=rule, now=timezone.now())
    finally:
        settings.STRIPE_API_BASE = api_base
        gateways.configure()
    assert Charge.objects.get(renewal=renewal).status == Charge.Status.REQUIRES_ACTION
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["requires_action"]
    report = dispatcher.run_dispatcher(now=timezone.now(), enqueue=False)
    assert report.reconciled == [Charge.objects.get(renewal=renewal).pk]
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["canceled"]
    assert Charge.objects.get(renewal=renewal).status == Charge.Status.FAILED


def test_a_3ds_renewal_paid_at_the_bank_with_no_return_page_or_webhook_is_recorded_by_its_next_look_up(rule, add_card):
    renewal = waiting_for_3ds(rule, add_card)
    charge = Charge.objects.get(renewal=renewal)
    [intent] = payment_intents_for(renewal)
    data_before = Line.objects.get(pk=rule.line_id).data_remaining_bytes
    first = charge.next_check_at
    assert first == charge.sent_at + timedelta(minutes=2)
    assert charge.pk not in reconciliation.stale_pending_charges(now=first - timedelta(seconds=1))

    # Not paid yet: the look-up leaves it waiting and backs off (no look-up every tick).
    assert dispatcher.run_dispatcher(now=first, enqueue=False).reconciled == []
    charge.refresh_from_db()
    assert charge.status == Charge.Status.REQUIRES_ACTION and charge.next_check_at == first + timedelta(minutes=2)
    assert charge.pk not in reconciliation.stale_pending_charges(now=first + timedelta(minutes=1))

    # Paid at the bank; neither the return page nor the webhook ever reaches us.
    assert authenticate_as_browser(intent["id"], intent["client_secret"]).status_code == 200
    report = dispatcher.run_dispatcher(now=charge.next_check_at, enqueue=False)
    assert report.reconciled == [charge.pk]
    renewal.refresh_from_db()
    charge.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED and charge.status == Charge.Status.SUCCEEDED
    assert Line.objects.get(pk=rule.line_id).data_remaining_bytes == data_before + rule.package.data_allowance_bytes

    # Recorded once: later ticks, and the late return page, change nothing.
    assert dispatcher.run_dispatcher(now=renewal.suspend_at + timedelta(minutes=1), enqueue=False).reconciled == []
    on_session.complete_authentication(user=rule.line.owner, charge_id=charge.pk)
    assert Line.objects.get(pk=rule.line_id).data_remaining_bytes == data_before + rule.package.data_allowance_bytes
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["succeeded"]
