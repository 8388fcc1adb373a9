"""The engine's transitions and guards, without the processor: triggers, caps, claims, the charge
step's pre-call checks, outcomes and the retry-then-suspend schedule."""

from datetime import timedelta

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Line, NetworkCommand
from payments.gateways import ChargeOutcome, OutcomeKind
from payments.models import Charge
from renewals.models import Alert, Renewal
from renewals.services import (
    charging,
    claims,
    dispatcher,
    operator,
    outcomes,
    reconciliation,
    rules,
    suspension,
    triggers,
)
from tests.builders import GB, MB, make_line, make_rule

from .conftest import send_owed_emails

NOW = timezone.now().replace(microsecond=0)


def open_and_claim(rule, now=NOW) -> Renewal:
    renewal = triggers.open_renewal(rule=rule, now=now, trigger="data")
    assert claims.claim_due_renewals(now=now, renewal_ids=[renewal.pk]) == [renewal.pk]
    renewal.refresh_from_db()
    return renewal


def outcome(kind: str, code: str = "", pi: str = ""):
    """The gateway's own outcome value; `not_sent` is the engine's reconciliation verdict."""
    if kind == "not_sent":
        return reconciliation.Outcome(kind=kind, failure_code=code)
    return ChargeOutcome(OutcomeKind(kind), pi or None, code, "")


def attempt(renewal, now, kind, code="", pi="") -> Renewal:
    """One attempt as the charge step makes it: Charge written first, then the outcome."""
    prepared = charging.prepare_charge(
        renewal_id=renewal.pk, customer_id="cus_test", payment_method_id="pm_test", now=now
    )
    assert prepared is not None
    return outcomes.record_charge_outcome(charge_id=prepared.charge.pk, outcome=outcome(kind, code, pi), now=now)


def test_a_second_open_renewal_for_a_line_is_refused_by_the_database(rule):
    Renewal.objects.create(line=rule.line, rule=rule, package=rule.package, amount_minor=9800, currency="CNY")
    with pytest.raises(IntegrityError), transaction.atomic():
        Renewal.objects.create(
            line=rule.line,
            rule=rule,
            package=rule.package,
            amount_minor=9800,
            currency="CNY",
            status=Renewal.Status.RETRY_SCHEDULED,
        )


def test_closed_renewals_do_not_count_as_open(rule):
    Renewal.objects.create(
        line=rule.line, rule=rule, package=rule.package, amount_minor=1, currency="CNY", status=Renewal.Status.SUCCEEDED
    )
    Renewal.objects.create(
        line=rule.line, rule=rule, package=rule.package, amount_minor=1, currency="CNY", status=Renewal.Status.CANCELLED
    )
    Renewal.objects.create(line=rule.line, rule=rule, package=rule.package, amount_minor=1, currency="CNY")


def test_crossing_the_threshold_opens_a_renewal_and_claims_it_at_once(rule, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        opened = triggers.evaluate_triggers(line_ids=[rule.line_id], now=NOW)
    assert len(opened) == 1
    renewal = Renewal.objects.get(line=rule.line)
    assert renewal.status == Renewal.Status.CHARGING  # handed to a worker, not left for the beat
    assert (renewal.amount_minor, renewal.currency, renewal.trigger) == (rule.package.price_minor, "CNY", "data")


def test_evaluating_twice_opens_one_renewal(rule):
    triggers.evaluate_triggers(line_ids=[rule.line_id], now=NOW)
    assert triggers.evaluate_triggers(line_ids=[rule.line_id], now=NOW) == []
    assert Renewal.objects.filter(line=rule.line).count() == 1


def test_no_renewal_above_the_threshold_or_with_the_rule_off(rule, package, customer, policy):
    above = make_line(owner=customer, data_remaining_bytes=600 * MB)
    make_rule(line=above, package=package)
    off = make_line(owner=customer, data_remaining_bytes=0)
    make_rule(line=off, package=package, enabled=False)
    assert triggers.evaluate_triggers(line_ids=[above.pk, off.pk], now=NOW) == []


def test_expiry_trigger_opens_a_renewal_within_the_window(customer, package, policy):
    line = make_line(owner=customer, expires_at=NOW + timedelta(hours=30))
    make_rule(line=line, package=package, trigger_data_below_mb=None, trigger_hours_before_expiry=24)
    assert triggers.evaluate_triggers(line_ids=[line.pk], now=NOW) == []
    opened = triggers.evaluate_triggers(line_ids=[line.pk], now=NOW + timedelta(hours=7))
    assert [r.trigger for r in opened] == ["expiry"]


def test_beat_sweep_finds_lines_the_usage_api_did_not_report(rule):
    report = dispatcher.run_dispatcher(now=NOW, enqueue=False)
    renewal = Renewal.objects.get(line=rule.line)
    assert report.opened == [renewal.pk] and report.claimed == [renewal.pk]
    assert renewal.status == Renewal.Status.CHARGING


def test_daily_cap_stops_a_runaway_line_and_alerts_the_operator(rule):
    for hours_ago in (3, 2):
        Renewal.objects.create(
            line=rule.line,
            rule=rule,
            package=rule.package,
            amount_minor=9800,
            currency="CNY",
            status=Renewal.Status.SUCCEEDED,
            completed_at=NOW - timedelta(hours=hours_ago),
        )
    assert triggers.evaluate_triggers(line_ids=[rule.line_id], now=NOW) == []
    assert Alert.objects.filter(line=rule.line, kind=Alert.Kind.RENEWAL_CAP_REACHED).count() == 1
    triggers.evaluate_triggers(line_ids=[rule.line_id], now=NOW)
    assert (
        Alert.objects.filter(line=rule.line, kind=Alert.Kind.RENEWAL_CAP_REACHED).count() == 1
    )  # one alert, not one per sweep
    # 24 hours after the older one, the cap has room again.
    assert len(triggers.evaluate_triggers(line_ids=[rule.line_id], now=NOW + timedelta(hours=21, minutes=1))) == 1


def test_monthly_spend_cap_counts_only_this_calendar_month(rule, customer):
    rule.monthly_spend_cap_minor = 15000
    rule.max_renewals_per_day = 5
    rule.save()
    now = NOW.replace(day=2, hour=12)
    done = Renewal.objects.create(
        line=rule.line,
        rule=rule,
        package=rule.package,
        amount_minor=9800,
        currency="CNY",
        status=Renewal.Status.SUCCEEDED,
        completed_at=now - timedelta(hours=1),
    )
    Charge.objects.create(
        user=customer,
        line=rule.line,
        renewal=done,
        attempt=1,
        purpose=Charge.Purpose.RENEWAL,
        amount_minor=9800,
        currency="CNY",
        status=Charge.Status.SUCCEEDED,
        idempotency_key="k2",
        settled_at=now - timedelta(hours=1),
    )
    assert triggers.evaluate_triggers(line_ids=[rule.line_id], now=now) == []
    assert Alert.objects.filter(line=rule.line, kind=Alert.Kind.SPEND_CAP_REACHED).exists()
    next_month = (now.replace(day=28) + timedelta(days=5)).replace(day=1, hour=0, minute=1)
    assert len(triggers.evaluate_triggers(line_ids=[rule.line_id], now=next_month)) == 1


def test_claim_takes_only_due_rows_and_marks_them_charging(rule, customer, package):
    due = triggers.open_renewal(rule=rule, now=NOW, trigger="data")
    later_line = make_line(owner=customer, data_remaining_bytes=0)
    later = triggers.open_renewal(
        rule=make_rule(line=later_line, package=package), now=NOW + timedelta(minutes=5), trigger="data"
    )
    assert claims.claim_due_renewals(now=NOW) == [due.pk]
    assert claims.claim_due_renewals(now=NOW) == []  # claimed rows are not claimable again
    later.refresh_from_db()
    assert later.status == Renewal.Status.DUE


def test_rule_turned_off_after_the_claim_cancels_and_charges_nothing(rule):
    renewal = open_and_claim(rule)
    cancelled = rules.turn_off_rule(rule=rule, now=NOW)
    assert [r.pk for r in cancelled] == [renewal.pk]
    assert charging.prepare_charge(renewal_id=renewal.pk, customer_id="cus", payment_method_id="pm", now=NOW) is None
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED
    assert not Charge.objects.filter(renewal=renewal).exists()


def test_rule_disabled_without_the_service_is_caught_under_the_lock(rule):
    renewal = open_and_claim(rule)
    type(rule).objects.filter(pk=rule.pk).update(enabled=False)  # e.g. the admin's bulk edit
    assert charging.prepare_charge(renewal_id=renewal.pk, customer_id="cus", payment_method_id="pm", now=NOW) is None
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED
    assert not Charge.objects.exists()


def test_charge_row_and_key_exist_before_the_call_and_a_second_run_sends_nothing(rule):
    renewal = open_and_claim(rule)
    first = charging.prepare_charge(renewal_id=renewal.pk, customer_id="cus", payment_method_id="pm", now=NOW)
    charge = Charge.objects.get(renewal=renewal)
    assert (charge.status, charge.attempt, charge.sent_at) == (Charge.Status.PENDING, 1, NOW)
    assert charge.idempotency_key == first.charge.idempotency_key and str(renewal.pk) in charge.idempotency_key
    assert charging.prepare_charge(renewal_id=renewal.pk, customer_id="cus", payment_method_id="pm", now=NOW) is None
    assert Charge.objects.filter(renewal=renewal).count() == 1


def test_turning_off_while_an_attempt_is_at_the_processor_does_not_retry_its_decline(rule):
    renewal = open_and_claim(rule)
    prepared = charging.prepare_charge(renewal_id=renewal.pk, customer_id="cus", payment_method_id="pm", now=NOW)
    assert rules.turn_off_rule(rule=rule, now=NOW) == []  # in flight: cannot be called back
    renewal = outcomes.record_charge_outcome(
        charge_id=prepared.charge.pk, outcome=outcome("soft_decline", code="insufficient_funds"), now=NOW
    )
    assert renewal.status == Renewal.Status.CANCELLED and renewal.next_attempt_at is None


def test_no_payment_method_waits_for_one_and_a_new_method_wakes_it(rule, customer, django_capture_on_commit_callbacks):
    renewal = open_and_claim(rule)
    with django_capture_on_commit_callbacks(execute=True):
        assert charging.prepare_charge(renewal_id=renewal.pk, customer_id="", payment_method_id="", now=NOW) is None
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.AWAITING_METHOD
    send_owed_emails()  # the notice task's work, run here
    assert len(mail.outbox) == 1 and "needs your action" in mail.outbox[0].subject
    with django_capture_on_commit_callbacks(execute=True):
        assert rules.payment_method_changed(user=customer, now=NOW) == [renewal.pk]
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CHARGING


def test_success_applies_the_package_and_marks_the_renewal_succeeded_together(rule, django_capture_on_commit_callbacks):
    renewal = open_and_claim(rule)
    line_before = Line.objects.get(pk=rule.line_id)
    with django_capture_on_commit_callbacks(execute=True):
        renewal = attempt(renewal, NOW, "succeeded", pi="pi_1")
    line = Line.objects.get(pk=rule.line_id)
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.completed_at == NOW
    assert line.data_remaining_bytes == line_before.data_remaining_bytes + rule.package.data_allowance_bytes
    assert line.expires_at == max(line_before.expires_at, NOW + timedelta(days=rule.package.validity_days))
    assert Charge.objects.get(renewal=renewal).status == Charge.Status.SUCCEEDED
    send_owed_emails()  # the notice task's work, run here
    assert [m.subject for m in mail.outbox] == [f"Line {line.iccid} was renewed"]
    # The rule is re-armed: the line is above its threshold, and a new trigger starts a new cycle.
    assert triggers.evaluate_triggers(line_ids=[line.pk], now=NOW) == []


def test_a_recorded_outcome_is_not_recorded_twice(rule):
    renewal = open_and_claim(rule)
    prepared = charging.prepare_charge(renewal_id=renewal.pk, customer_id="cus", payment_method_id="pm", now=NOW)
    ok = outcome("succeeded", pi="pi_2")
    outcomes.record_charge_outcome(charge_id=prepared.charge.pk, outcome=ok, now=NOW)
    remaining = Line.objects.get(pk=rule.line_id).data_remaining_bytes
    outcomes.record_charge_outcome(charge_id=prepared.charge.pk, outcome=ok, now=NOW)
    assert Line.objects.get(pk=rule.line_id).data_remaining_bytes == remaining


def test_two_successful_charges_for_one_renewal_are_refused_by_the_database(rule, customer):
    renewal = open_and_claim(rule)
    for n in (1, 2):
        Charge.objects.create(
            user=customer,
            renewal=renewal,
            attempt=n,
            purpose=Charge.Purpose.RENEWAL,
            amount_minor=1,
            currency="CNY",
            idempotency_key=f"dup-{n}",
        )
    Charge.objects.filter(renewal=renewal, attempt=1).update(status=Charge.Status.SUCCEEDED)
    with pytest.raises(IntegrityError), transaction.atomic():
        Charge.objects.filter(renewal=renewal, attempt=2).update(status=Charge.Status.SUCCEEDED)


def test_authentication_required_waits_for_the_customer_without_using_a_retry(rule, django_capture_on_commit_callbacks):
    renewal = open_and_claim(rule)
    with django_capture_on_commit_callbacks(execute=True):
        renewal = attempt(renewal, NOW, "authentication_required", code="authentication_required", pi="pi_3ds")
    assert renewal.status == Renewal.Status.REQUIRES_ACTION and renewal.failures == 0
    assert Charge.objects.get(renewal=renewal).status == Charge.Status.REQUIRES_ACTION
    send_owed_emails()  # the notice task's work, run here
    assert "needs your action" in mail.outbox[-1].subject
    # The customer's pay-now confirms the same PaymentIntent: the line is renewed.
    charge = Charge.objects.get(renewal=renewal)
    renewal = outcomes.record_charge_outcome(charge_id=charge.pk, outcome=outcome("succeeded", pi="pi_3ds"), now=NOW)
    assert renewal.status == Renewal.Status.SUCCEEDED


def test_hard_decline_stops_retries_until_the_method_changes(rule, customer):
    renewal = attempt(open_and_claim(rule), NOW, "hard_decline", code="expired_card")
    assert renewal.status == Renewal.Status.AWAITING_METHOD and renewal.next_attempt_at is None
    assert claims.claim_due_renewals(now=NOW + timedelta(days=30)) == []
    assert rules.payment_method_changed(user=customer, now=NOW + timedelta(days=1)) == [renewal.pk]


def test_soft_declines_follow_the_policy_then_the_line_is_suspended(rule, policy, django_capture_on_commit_callbacks):
    renewal = open_and_claim(rule)
    now = NOW
    for delay in policy.retry_delays_minutes:
        with django_capture_on_commit_callbacks(execute=True):
            renewal = attempt(renewal, now, "soft_decline", code="insufficient_funds")
        assert renewal.status == Renewal.Status.RETRY_SCHEDULED
        assert renewal.next_attempt_at == now + timedelta(minutes=delay)
        assert claims.claim_due_renewals(now=renewal.next_attempt_at - timedelta(seconds=1)) == []  # not a second early
        now = renewal.next_attempt_at
        assert claims.claim_due_renewals(now=now) == [renewal.pk]
    with django_capture_on_commit_callbacks(execute=True):
        renewal = attempt(renewal, now, "soft_decline", code="insufficient_funds")
    assert renewal.status == Renewal.Status.FAILED and renewal.failures == 4 and renewal.line_suspended_at == now
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.SUSPENDED
    assert list(NetworkCommand.objects.filter(line=rule.line).values_list("command", flat=True)) == ["suspend"]
    assert Charge.objects.filter(renewal=renewal, status=Charge.Status.FAILED).count() == 4
    assert Alert.objects.filter(line=rule.line, kind=Alert.Kind.REPEATED_FAILURES).exists()
    assert Alert.objects.filter(line=rule.line, kind=Alert.Kind.RENEWAL_FAILED).exists()
    send_owed_emails()  # the notice task's work, run here
    subjects = [m.subject for m in mail.outbox]
    assert subjects.count(f"The renewal payment for line {rule.line.iccid} failed") == 3
    assert subjects[-1] == f"Line {rule.line.iccid} is suspended"
    # A failed cycle does not start a new one by itself: the customer has to act.
    assert triggers.evaluate_triggers(line_ids=[rule.line_id], now=now + timedelta(days=10)) == []


def test_paying_a_failed_renewal_restores_the_suspended_line(
    rule, policy, customer, django_capture_on_commit_callbacks
):
    policy.retry_delays_minutes = []
    policy.save()
    renewal = attempt(open_and_claim(rule), NOW, "soft_decline", code="card_declined")
    assert renewal.status == Renewal.Status.FAILED
    pay_now = Charge.objects.create(
        user=customer,
        line=rule.line,
        renewal=renewal,
        attempt=renewal.attempts + 1,
        purpose=Charge.Purpose.RENEWAL,
        amount_minor=renewal.amount_minor,
        currency="CNY",
        idempotency_key="pay-now-1",
        sent_at=NOW,
    )
    with django_capture_on_commit_callbacks(execute=True):
        renewal = outcomes.record_charge_outcome(
            charge_id=pay_now.pk, outcome=outcome("succeeded", pi="pi_now"), now=NOW
        )
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.resumed_line
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE
    assert list(NetworkCommand.objects.filter(line=rule.line).order_by("id").values_list("command", flat=True)) == [
        "suspend",
        "resume",
    ]
    send_owed_emails()  # the notice task's work, run here
    assert mail.outbox[-1].subject == f"Line {rule.line.iccid} is restored"


def test_grace_delays_the_suspension_to_the_dispatcher(rule, policy):
    policy.retry_delays_minutes = []
    policy.grace_hours = 12
    policy.save()
    renewal = attempt(open_and_claim(rule), NOW, "soft_decline")
    assert renewal.status == Renewal.Status.FAILED and renewal.line_suspended_at is None
    assert suspension.suspend_overdue_lines(now=NOW + timedelta(hours=11)) == []
    assert suspension.suspend_overdue_lines(now=NOW + timedelta(hours=12)) == [renewal.pk]
    assert suspension.suspend_overdue_lines(now=NOW + timedelta(hours=13)) == []
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.SUSPENDED


def test_no_new_renewal_before_the_policy_delay_after_a_decline(rule, policy):
    renewal = attempt(open_and_claim(rule), NOW, "soft_decline")
    rules.turn_off_rule(rule=rule, now=NOW)  # cancels the retry
    rule.refresh_from_db()
    rule.enabled = True
    rule.save()
    # Turning the rule off and on again must not bypass the retry delay.
    assert triggers.evaluate_triggers(line_ids=[rule.line_id], now=NOW + timedelta(minutes=30)) == []
    assert len(triggers.evaluate_triggers(line_ids=[rule.line_id], now=NOW + timedelta(minutes=61))) == 1
    assert renewal.failures == 1


def test_bill_overage_adds_the_overage_fee_to_the_renewal(rule, policy):
    policy.overage_price_per_gb_minor = 1000
    policy.save()
    rule.overage_policy = "bill_overage"
    rule.overage_cap_mb = 2048
    rule.save()
    Line.objects.filter(pk=rule.line_id).update(data_remaining_bytes=0, overage_bytes=GB + 1)
    rule.line.refresh_from_db()
    renewal = triggers.open_renewal(rule=rule, now=NOW, trigger="data")
    assert renewal.amount_minor == rule.package.price_minor + 1001  # rounded up, never a fraction
    assert renewal.overage_billed_bytes == GB + 1


def test_renewing_a_line_blocked_for_data_unblocks_it_at_the_network(rule):
    Line.objects.filter(pk=rule.line_id).update(status=Line.Status.DATA_EXHAUSTED, data_remaining_bytes=0)
    attempt(open_and_claim(rule), NOW, "succeeded", pi="pi_unblock")
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE
    assert list(NetworkCommand.objects.filter(line=rule.line).values_list("command", flat=True)) == ["unblock_data"]


def test_operator_retry_now_and_cancel(rule):
    renewal = attempt(open_and_claim(rule), NOW, "soft_decline", code="insufficient_funds")
    assert operator.retry_now(renewal_id=renewal.pk, now=NOW + timedelta(minutes=1))
    assert claims.claim_due_renewals(now=NOW + timedelta(minutes=1)) == [renewal.pk]
    assert operator.cancel_renewal(renewal_id=renewal.pk, now=NOW)  # charging, but no attempt sent yet
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED
    assert not operator.retry_now(renewal_id=renewal.pk, now=NOW)  # a closed renewal stays closed


def test_a_new_method_gives_a_failed_cycle_one_immediate_attempt(
    rule, policy, customer, django_capture_on_commit_callbacks
):
    policy.retry_delays_minutes = []
    policy.save()
    renewal = attempt(open_and_claim(rule), NOW, "soft_decline", code="card_declined")
    assert renewal.status == Renewal.Status.FAILED
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.SUSPENDED
    later = NOW + timedelta(days=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert rules.payment_method_changed(user=customer, now=later) == [renewal.pk]
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CHARGING
    renewal = attempt(renewal, later, "succeeded", pi="pi_new_card")
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.resumed_line
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE
    # The paid cycle no longer holds the line back: its next trigger opens a new renewal.
    Line.objects.filter(pk=rule.line_id).update(data_remaining_bytes=0)
    assert len(triggers.evaluate_triggers(line_ids=[rule.line_id], now=later + timedelta(days=1))) == 1


def test_a_line_the_operator_suspended_is_not_renewed_behind_their_back(rule):
    Line.objects.filter(pk=rule.line_id).update(status=Line.Status.SUSPENDED)
    assert triggers.evaluate_triggers(line_ids=[rule.line_id], now=NOW) == []
    assert dispatcher.run_dispatcher(now=NOW, enqueue=False).opened == []


def test_operator_retry_gives_a_failed_cycle_one_more_attempt_that_resumes_the_line(rule, policy):
    policy.retry_delays_minutes = []
    policy.save()
    renewal = attempt(open_and_claim(rule), NOW, "soft_decline", code="card_declined")
    assert renewal.status == Renewal.Status.FAILED
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.SUSPENDED
    later = NOW + timedelta(hours=3)
    assert operator.retry_now(renewal_id=renewal.pk, now=later)
    assert claims.claim_due_renewals(now=later) == [renewal.pk]
    renewal = attempt(Renewal.objects.get(pk=renewal.pk), later, "succeeded", pi="pi_operator_retry")
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE


def test_operator_cannot_reopen_a_failed_cycle_the_line_has_moved_past(rule, policy):
    policy.retry_delays_minutes = []
    policy.save()
    old = attempt(open_and_claim(rule), NOW, "soft_decline", code="card_declined")
    newer = Renewal.objects.create(
        line=rule.line,
        rule=rule,
        package=rule.package,
        amount_minor=100,
        currency="CNY",
        status=Renewal.Status.DUE,
        next_attempt_at=NOW,
    )
    assert not operator.retry_now(renewal_id=old.pk, now=NOW)
    old.refresh_from_db()
    assert old.status == Renewal.Status.FAILED and newer.status == Renewal.Status.DUE
