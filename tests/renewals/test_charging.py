"""The charge step against the real localstripe: what the processor ends up holding is checked
in its own list of PaymentIntents, not in our tables."""

from datetime import timedelta

import time_machine
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Line
from payments import gateways
from payments.models import Charge
from renewals.models import Renewal
from renewals.services import charging, claims, dispatcher, outcomes, pay_now, rules, triggers
from tests.builders import GB

from .conftest import payment_intents_for, send_owed_emails

DECLINING_CARD = "4000000000000341"  # attaches, then every charge is declined
THREE_D_SECURE_CARD = "4000002500003155"


def claimed(rule, now) -> Renewal:
    triggers.evaluate_triggers(line_ids=[rule.line_id], now=now, dispatch=False)
    renewal = Renewal.objects.get(line=rule.line, status=Renewal.Status.DUE)
    assert claims.claim_due_renewals(now=now, renewal_ids=[renewal.pk]) == [renewal.pk]
    return renewal


def test_renewal_is_charged_off_session_and_the_package_applied(rule, add_card, django_capture_on_commit_callbacks):
    pm = add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    with django_capture_on_commit_callbacks(execute=True):
        renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)
    assert renewal.status == Renewal.Status.SUCCEEDED
    [pi] = payment_intents_for(renewal)
    charge = Charge.objects.get(renewal=renewal)
    assert pi["status"] == "succeeded" and pi["id"] == charge.payment_intent_id
    assert pi["amount"] == rule.package.price_minor and pi["payment_method"] == pm.id
    assert pi["metadata"]["charge_id"] == str(charge.pk)
    assert charge.payment_method_summary == "Visa •••• 4242"
    assert Line.objects.get(pk=rule.line_id).data_remaining_bytes > 10 * GB
    send_owed_emails()  # the notice task's work, run here
    assert mail.outbox[-1].to == [rule.line.owner.email]


def test_the_same_charge_task_run_twice_charges_once(rule, add_card):
    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    charging.charge_renewal(renewal_id=renewal.pk, now=now)
    charging.charge_renewal(renewal_id=renewal.pk, now=now)
    assert len(payment_intents_for(renewal)) == 1
    assert Charge.objects.filter(renewal=renewal).count() == 1


def test_rule_turned_off_while_the_task_waits_creates_no_payment_intent(rule, add_card):
    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)  # claimed: its task is in the queue
    rules.turn_off_rule(rule=rule, now=now)
    renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)
    assert renewal.status == Renewal.Status.CANCELLED
    assert payment_intents_for(renewal) == []
    assert not Charge.objects.filter(renewal=renewal).exists()


def test_three_d_secure_off_session_needs_the_customers_action(rule, add_card, django_capture_on_commit_callbacks):
    add_card(THREE_D_SECURE_CARD)
    now = timezone.now()
    renewal = claimed(rule, now)
    with django_capture_on_commit_callbacks(execute=True):
        renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)
    assert renewal.status == Renewal.Status.REQUIRES_ACTION and renewal.failures == 0
    assert Charge.objects.get(renewal=renewal).status == Charge.Status.REQUIRES_ACTION
    send_owed_emails()  # the notice task's work, run here
    assert "needs your action" in mail.outbox[-1].subject
    assert claims.claim_due_renewals(now=now + timedelta(days=3)) == []  # no blind retries


def test_a_crash_after_the_processor_answered_is_reconciled_not_resent(rule, add_card):
    """The worker dies between Stripe's answer and our commit: the charge stays pending; the
    dispatcher finds the PaymentIntent by its metadata and records it. Nothing is sent again."""
    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    customer_id = gateways.ensure_customer(rule.line.owner).id
    pm_id = gateways.default_payment_method_id(rule.line.owner)
    prepared = charging.prepare_charge(renewal_id=renewal.pk, customer_id=customer_id, payment_method_id=pm_id, now=now)
    gateways.charge_off_session(charge=prepared.charge, customer_id=customer_id, payment_method_id=pm_id)
    # ... killed here. The task is redelivered: it sees the attempt in flight and sends nothing.
    charging.charge_renewal(renewal_id=renewal.pk, now=now + timedelta(minutes=1))
    assert len(payment_intents_for(renewal)) == 1
    # Too early to call the attempt lost: the dispatcher leaves it alone.
    assert dispatcher.run_dispatcher(now=now + timedelta(minutes=5), enqueue=False).reconciled == []
    report = dispatcher.run_dispatcher(now=now + timedelta(minutes=11), enqueue=False)
    assert report.reconciled == [prepared.charge.pk]
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert len(payment_intents_for(renewal)) == 1
    assert Charge.objects.get(renewal=renewal).status == Charge.Status.SUCCEEDED


def test_an_attempt_the_processor_never_saw_is_retried_as_a_new_attempt(rule, add_card):
    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    prepared = charging.prepare_charge(
        renewal_id=renewal.pk, customer_id="cus_unused", payment_method_id="pm_unused", now=now
    )
    # ... killed before the call: localstripe has no PaymentIntent for it.
    later = now + timedelta(minutes=11)
    report = dispatcher.run_dispatcher(now=later, enqueue=False)
    assert Charge.objects.get(pk=prepared.charge.pk).failure_code == "not_sent"
    # Not a decline (docs/invariants.md #11): no retry spent, due again at once, and that tick's claim takes it.
    assert Renewal.objects.get(pk=renewal.pk).failures == 0
    assert report.claimed == [renewal.pk]
    renewal = charging.charge_renewal(renewal_id=renewal.pk, now=later)
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.attempts == 2 and renewal.failures == 0
    assert len(payment_intents_for(renewal)) == 1


def test_full_dunning_run_then_pay_now_restores_the_line(
    rule, policy, add_card, customer, django_capture_on_commit_callbacks
):
    """Threshold crossed, the card declines at every attempt on the policy's schedule, the line is
    suspended; the customer adds a good card and pays now; the line is back at once."""
    add_card(DECLINING_CARD)
    start = timezone.now().replace(microsecond=0)
    times = []
    with django_capture_on_commit_callbacks(execute=True):
        with time_machine.travel(start, tick=False):
            call_command("renewals_tick")
        renewal = Renewal.objects.get(line=rule.line)
        while renewal.status == Renewal.Status.RETRY_SCHEDULED:
            times.append(renewal.next_attempt_at)
            with time_machine.travel(renewal.next_attempt_at - timedelta(seconds=1), tick=False):
                call_command("renewals_tick")  # not a second early
            renewal.refresh_from_db()
            assert renewal.status == Renewal.Status.RETRY_SCHEDULED
            with time_machine.travel(renewal.next_attempt_at, tick=False):
                call_command("renewals_tick")
            renewal.refresh_from_db()
    assert [t - start for t in times] == [timedelta(minutes=60), timedelta(minutes=420), timedelta(minutes=1860)]
    assert renewal.status == Renewal.Status.FAILED
    assert len(payment_intents_for(renewal)) == 4
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.SUSPENDED
    send_owed_emails()  # the notice task's work, run here
    assert mail.outbox[-1].subject == f"Line {rule.line.iccid} is suspended"

    good = add_card("4242424242424242")
    with django_capture_on_commit_callbacks(execute=True):
        charge = pay_now.start_pay_now(renewal_id=renewal.pk, payment_method_id=good.id, now=timezone.now())
        outcome = gateways.charge_on_session(
            charge=charge, customer_id=gateways.ensure_customer(customer).id, payment_method_id=good.id
        )
        renewal = outcomes.record_charge_outcome(charge_id=charge.pk, outcome=outcome, now=timezone.now())
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.resumed_line
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE
    send_owed_emails()  # the notice task's work, run here
    assert mail.outbox[-1].subject == f"Line {rule.line.iccid} is restored"
    assert [pi["status"] for pi in payment_intents_for(renewal)].count("succeeded") == 1
