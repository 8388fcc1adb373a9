"""Precedence (docs/invariants.md #10, docs/precedence.md): operator suspension > termination >
payment state. No renewal lifts an operator's suspension; a terminated line is not charged, and a
success that still arrives for it is recorded, refunded and alerted; a line given to another owner
charges nobody by the old owner's rule. Against the real localstripe."""

from datetime import timedelta

import stripe
from django.conf import settings
from django.utils import timezone

from accounts.models import Line, NetworkCommand
from accounts.services.line_status import suspend_line, terminate_line
from payments import gateways
from payments.models import Charge
from renewals.models import Alert, Renewal, RenewalRule
from renewals.services import charging, dispatcher, outcomes
from tests.builders import make_user
from tests.payments.conftest import authenticate_as_browser, create_card

from .conftest import payment_intents_for
from .test_authentication import waiting_for_3ds
from .test_charging import DECLINING_CARD, claimed


def commands(line) -> list[str]:
    return list(NetworkCommand.objects.filter(line_id=line.pk).order_by("id").values_list("command", flat=True))


def operator():
    return make_user(email=f"operator-{timezone.now().timestamp()}@ops.example.com", is_staff=True)


def test_a_scheduled_retry_does_not_lift_an_operators_suspension(rule, add_card):
    add_card(DECLINING_CARD)
    now = timezone.now()
    renewal = charging.charge_renewal(renewal_id=claimed(rule, now).pk, now=now)
    assert renewal.status == Renewal.Status.RETRY_SCHEDULED
    assert suspend_line(line_id=rule.line_id, reason="fraud check", actor=operator(), now=now)
    add_card("4242424242424242")  # a card that would pay

    later = renewal.next_attempt_at
    report = dispatcher.run_dispatcher(now=later, enqueue=False)
    for renewal_id in report.claimed:
        charging.charge_renewal(renewal_id=renewal_id, now=later)

    line = Line.objects.get(pk=rule.line_id)
    assert line.status == Line.Status.SUSPENDED
    assert commands(line) == ["suspend"]
    assert [pi["status"] for pi in payment_intents_for(renewal)].count("succeeded") == 0
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED


def test_a_3ds_payment_completed_after_the_operator_suspended_the_line_is_kept_but_the_line_stays_suspended(
    rule, add_card
):
    renewal = waiting_for_3ds(rule, add_card)
    [intent] = payment_intents_for(renewal)
    data_before = Line.objects.get(pk=rule.line_id).data_remaining_bytes
    assert suspend_line(line_id=rule.line_id, reason="abuse report", actor=operator(), now=timezone.now())
    assert authenticate_as_browser(intent["id"], intent["client_secret"]).status_code == 200

    # What the webhook (or the browser's return) records.
    outcome = gateways.outcome_from_payment_intent(gateways.retrieve_payment_intent(intent["id"]))
    outcomes.record_charge_outcome(
        charge_id=Charge.objects.get(renewal=renewal).pk, outcome=outcome, now=timezone.now()
    )

    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED and not renewal.resumed_line
    line = Line.objects.get(pk=rule.line_id)
    assert line.data_remaining_bytes == data_before + rule.package.data_allowance_bytes  # paid for, and has it
    assert line.status == Line.Status.SUSPENDED
    assert commands(line) == ["suspend"]


def test_terminating_a_line_cancels_its_open_renewal_and_withdraws_its_3ds_intent(
    rule, add_card, django_capture_on_commit_callbacks
):
    renewal = waiting_for_3ds(rule, add_card)
    [intent] = payment_intents_for(renewal)
    line = Line.objects.get(pk=rule.line_id)

    with django_capture_on_commit_callbacks(execute=True):
        assert terminate_line(line_id=line.pk, reason="contract ended", actor=None, now=timezone.now())

    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED
    assert commands(Line.objects.get(pk=line.pk))[-1] == "suspend"  # the network ends the service too
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["canceled"]
    assert authenticate_as_browser(intent["id"], intent["client_secret"]).status_code >= 400


def test_a_renewal_paid_after_its_line_was_terminated_is_recorded_refunded_and_alerted_without_an_error_loop(
    rule, add_card, customer, django_capture_on_commit_callbacks
):
    card = add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    prepared = charging.prepare_charge(
        renewal_id=renewal.pk, customer_id=gateways.ensure_customer(customer).id, payment_method_id=card.id, now=now
    )
    # The processor takes the money; the worker dies before recording it.
    assert gateways.charge_off_session(
        charge=prepared.charge, customer_id=prepared.customer_id, payment_method_id=card.id
    ).succeeded
    line = Line.objects.get(pk=rule.line_id)
    data_before = line.data_remaining_bytes
    with django_capture_on_commit_callbacks(execute=True):
        assert terminate_line(line_id=line.pk, reason="contract ended", actor=None, now=now)
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CHARGING  # in flight: left to its outcome

    later = now + timedelta(minutes=30)
    for _tick in range(2):  # a second tick finds nothing left to do, and raises nothing
        with django_capture_on_commit_callbacks(execute=True):
            dispatcher.run_dispatcher(now=later, enqueue=False)

    charge = Charge.objects.get(pk=prepared.charge.pk)
    assert charge.status == Charge.Status.REFUNDED and charge.refunded_minor == charge.amount_minor
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED and renewal.last_failure_code == "line_terminated"
    assert Alert.objects.filter(line_id=line.pk, kind=Alert.Kind.UNRECONCILED_CHARGE, resolved_at__isnull=True).exists()
    line.refresh_from_db()
    assert line.status == Line.Status.TERMINATED and line.data_remaining_bytes == data_before
    refunds = stripe.Refund.list(payment_intent=charge.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY)["data"]
    assert sum(refund["amount"] for refund in refunds) == charge.amount_minor


def test_giving_a_line_to_another_owner_turns_the_old_owners_rule_off_and_charges_nobody(
    rule, add_card, django_capture_on_commit_callbacks
):
    add_card()
    new_owner = make_user()
    stripe_customer = gateways.ensure_customer(new_owner)
    method = gateways.attach_payment_method(customer_id=stripe_customer.id, payment_method_id=create_card())
    gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=method.id)
    line = Line.objects.get(pk=rule.line_id)

    with django_capture_on_commit_callbacks(execute=True):
        line.owner = new_owner  # what the operator's line form saves
        line.save()

    assert RenewalRule.objects.get(pk=rule.pk).enabled is False
    now = timezone.now()
    report = dispatcher.run_dispatcher(now=now, enqueue=False)
    for renewal_id in report.claimed:
        charging.charge_renewal(renewal_id=renewal_id, now=now)
    assert not Charge.objects.filter(line_id=line.pk).exists()
    assert not Renewal.objects.filter(line_id=line.pk).exists()
