"""What a renewal charge's outcome does to its renewal: success applies the package, declines
schedule a retry or fail the cycle, 3-D Secure waits for the customer. Registered as payments'
outcome handler for renewal charges (RenewalsConfig.ready)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction

from accounts import metrics
from accounts.models import Line
from accounts.services import apply_package_to_locked_line
from payments.models import Charge, next_authentication_check
from payments.services import refunds

from .. import notifications
from ..models import Alert, Renewal, RetryPolicy
from . import alerts, authentications, precedence, suspension
from ._base import (
    AUTHENTICATION_REQUIRED,
    DECLINE_KINDS,
    HARD,
    NOT_SENT,
    PENDING,
    PROCESSOR_ERROR,
    SUCCEEDED,
    SUPERSEDED,
    THROTTLED,
    ChargeResult,
    _kind,
    _log,
    _reconcile_after,
    authentication_window,
)
from ._locks import _cancel, _is_latest, _locked_renewal

logger = logging.getLogger(__name__)


def _outcome_fields(outcome: ChargeResult) -> dict[str, str]:
    return {
        "kind": _kind(outcome),
        "payment_intent_id": getattr(outcome, "payment_intent_id", "") or "",
        "failure_code": getattr(outcome, "failure_code", "") or "",
        "failure_message": getattr(outcome, "failure_message", "") or "",
        "payment_method_summary": getattr(outcome, "payment_method_summary", "") or "",
    }


def record_charge_outcome(*, charge_id: int, outcome: ChargeResult, now: datetime) -> Renewal:
    """Record what the processor said about one attempt of a renewal (off-session, reconciled, or
    the customer's pay-now) and move the renewal on. Idempotent: an attempt already settled is
    left alone, and a second success for one renewal is refused by the database (docs/invariants.md #1)."""
    renewal_id = Charge.objects.filter(pk=charge_id).values_list("renewal_id", flat=True).get()
    return _record_outcome(renewal_id=renewal_id, charge_id=charge_id, outcome=outcome, now=now)


def _record_outcome(*, renewal_id: int, charge_id: int, outcome: ChargeResult, now: datetime) -> Renewal:
    result = _outcome_fields(outcome)
    if result["kind"] in (PROCESSOR_ERROR, PENDING, THROTTLED):
        raise ValueError(f"outcome {result['kind']} is not an outcome: reconcile or release the charge instead")
    with transaction.atomic():
        # The rule is read, not locked: a success wins whatever the rule says, and a rule turned off
        # meanwhile waits for this renewal's lock, then cancels what this leaves open.
        renewal = _locked_renewal(renewal_id, with_rule=True)
        rule = renewal.rule
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        closed = charge.status not in (Charge.Status.PENDING, Charge.Status.REQUIRES_ACTION)
        if closed and not (result["kind"] == SUCCEEDED and charge.status == Charge.Status.FAILED):
            _log("outcome_ignored", renewal, charge=charge.pk, charge_status=charge.status, kind=result["kind"])
            return renewal
        if result["payment_intent_id"]:
            charge.payment_intent_id = result["payment_intent_id"]
        if result["payment_method_summary"]:
            charge.payment_method_summary = result["payment_method_summary"]
        kind = result["kind"]
        rule_on = rule is not None and rule.enabled
        if (
            charge.status == Charge.Status.REQUIRES_ACTION
            and kind not in (SUCCEEDED, AUTHENTICATION_REQUIRED)
            and getattr(outcome, "payment_intent_status", "") == "canceled"
        ):
            # Only we cancel an intent waiting for 3-D Secure (a withdrawal before a new attempt, a rule
            # turned off, a timeout): Stripe's payment_intent.canceled for it, which may be recorded
            # before our own read of the intent, is not a decline and spends no retry (docs/money.md).
            result["failure_code"], result["failure_message"] = (
                SUPERSEDED,
                result["failure_message"] or "Withdrawn at the processor.",
            )
        # Only an off-session attempt moves the retry cycle; the customer's pay-now never does.
        moves_cycle = (
            renewal.status == Renewal.Status.CHARGING and not charge.on_session and result["failure_code"] != SUPERSEDED
        )
        if kind == SUCCEEDED and _paid_too_late(renewal=renewal, charge=charge, closed=closed):
            _refund_paid_too_late(renewal=renewal, charge=charge, now=now)
        elif kind == SUCCEEDED:
            if closed:  # no outcome is dropped: its cycle is still open, so it pays for it
                _log("late_success_counted", renewal, charge=charge.pk, charge_status=charge.status)
            _record_success(renewal=renewal, charge=charge, now=now)
        elif kind == AUTHENTICATION_REQUIRED:
            if charge.status != Charge.Status.REQUIRES_ACTION:
                # Looked up at the processor until it settles, like a pending attempt (reconcile_charge).
                charge.next_check_at = next_authentication_check(
                    sent_at=charge.sent_at, now=now, cap=_reconcile_after()
                )
            charge.status = Charge.Status.REQUIRES_ACTION
            charge.decline_kind = Charge.DeclineKind.AUTHENTICATION_REQUIRED
            charge.failure_code = result["failure_code"] or "authentication_required"
            charge.failure_message = result["failure_message"][:500]
            charge.save()
            if moves_cycle:
                renewal.status = Renewal.Status.REQUIRES_ACTION
                renewal.last_failure_code = charge.failure_code
                renewal.last_failure_message = charge.failure_message
                # The customer's time to pay now; then the cycle fails like one out of retries.
                renewal.suspend_at = now + authentication_window()
                renewal.save()
                _log("renewal_requires_action", renewal, charge=charge.pk)
                notifications.notify_later(renewal, notifications.NEEDS_ACTION)
        elif kind == NOT_SENT and renewal.status == Renewal.Status.CHARGING:
            _record_not_sent(renewal=renewal, charge=charge, result=result, rule_on=rule_on, now=now)
        else:
            charge.status = Charge.Status.FAILED
            charge.decline_kind = DECLINE_KINDS.get(kind, Charge.DeclineKind.PROCESSOR_ERROR)
            charge.failure_code = result["failure_code"][:100]
            charge.failure_message = result["failure_message"][:500]
            charge.settled_at = now
            charge.save()
            if moves_cycle:
                _record_decline(renewal=renewal, charge=charge, hard=(kind == HARD), rule_on=rule_on, now=now)
            else:
                # A declined pay-now (the customer saw it in the browser), or an intent withdrawn from
                # a cancelled renewal: the cycle stays where it was.
                _log("pay_now_declined", renewal, charge=charge.pk, code=charge.failure_code)
                if (
                    not rule_on
                    and charge.on_session
                    and renewal.status in Renewal.OPEN
                    and renewal.status != Renewal.Status.CHARGING
                ):
                    # The rule went off while this pay-now was at the processor (_cancel_unsent left the
                    # renewal to it): the cancellation it deferred happens now. A failed one stays payable.
                    _cancel(renewal, now=now, reason="rule_off")
        metrics.count_on_commit(metrics.CHARGE_OUTCOMES, outcome=kind, decline_kind=charge.decline_kind or "none")
    return renewal


def _cycle_open(renewal: Renewal) -> bool:
    """Whether a success may still pay for this renewal: it is open, or it failed and is still the
    line's latest cycle (the one pay-now, a new method or the operator's retry would pay)."""
    return renewal.status in Renewal.OPEN or (renewal.status == Renewal.Status.FAILED and _is_latest(renewal))


def _paid_too_late(*, renewal: Renewal, charge: Charge, closed: bool) -> bool:
    """A success that must not pay for the renewal: another charge already did (a charge succeeds
    only with its renewal, in one transaction), or we had closed this charge and its cycle has
    closed since. (A charge still open when its renewal was cancelled wins: the customer paid
    before the rule went off.)"""
    return renewal.status == Renewal.Status.SUCCEEDED or (closed and not _cycle_open(renewal))


def _refund_paid_too_late(*, renewal: Renewal, charge: Charge, now: datetime) -> None:
    """No outcome is dropped (docs/money.md): money taken for a cycle that no longer wants it is
    kept on the ledger as `refund_due`, an operator is alerted, and it is refunded after the
    commit (payments.refund_due_charge; the payments sweep retries it)."""
    previous = charge.status
    charge.status = Charge.Status.REFUND_DUE
    charge.decline_kind = ""
    charge.failure_code = "paid_after_closed"
    charge.failure_message = f"paid after renewal {renewal.pk} was {renewal.status}: refunded"
    charge.settled_at = now
    charge.save()
    alerts.raise_alert(
        kind=Alert.Kind.PAID_AFTER_CLOSED,
        line=renewal.line,
        renewal=renewal,
        now=now,
        message=f"charge {charge.pk} ({charge.payment_intent_id}) paid renewal {renewal.pk} after it was "
        f"{renewal.status} (charge was {previous}): refunded automatically",
    )
    _log(
        "paid_after_cycle_closed",
        renewal,
        charge=charge.pk,
        charge_was=previous,
        payment_intent=charge.payment_intent_id,
    )
    charge_id = charge.pk
    transaction.on_commit(lambda: refunds.refund_due_charge(charge_id=charge_id))


def _record_success(*, renewal: Renewal, charge: Charge, now: datetime) -> None:
    charge.status = Charge.Status.SUCCEEDED
    charge.decline_kind = ""
    charge.failure_code = ""
    charge.failure_message = ""
    charge.settled_at = now
    charge.save()
    line = Line.objects.select_for_update().get(pk=renewal.line_id)
    if line.status == Line.Status.TERMINATED:
        precedence._refund_success_on_terminated_line(renewal=renewal, charge=charge, now=now)
        return
    # An operator's suspension outlives the payment (precedence): apply_package keeps the line
    # suspended and writes no resume; the customer still gets what they paid for.
    was_suspended = line.status == Line.Status.SUSPENDED and not precedence.suspended_by_operator(line)
    previous = renewal.status
    # Invariant 6: the package and the renewal's success commit together.
    line = apply_package_to_locked_line(
        line=line, package=renewal.package, now=now, overage_billed_bytes=renewal.overage_billed_bytes
    )
    renewal.line = line
    renewal.status = Renewal.Status.SUCCEEDED
    renewal.completed_at = now
    renewal.next_attempt_at = None
    renewal.last_failure_code = ""
    renewal.last_failure_message = ""
    renewal.resumed_line = was_suspended
    renewal.save()
    alerts.close_alerts_of_paid_line(line=line, now=now)
    _log("renewal_succeeded", renewal, previous=previous, charge=charge.pk, payment_intent=charge.payment_intent_id)
    notifications.notify_later(renewal, notifications.RESTORED if was_suspended else notifications.SUCCEEDED)
    # The cycle is paid: any other intent of it still waiting for 3-D Secure (an emailed link) is
    # withdrawn after the commit, so it cannot take the money a second time; the dispatcher's
    # sweep of abandoned intents repeats it if this is lost. (The current off-session attempt of a
    # charging cycle needs no look: the charge step withdrew every such intent before sending it.)
    current_attempt = (
        previous == Renewal.Status.CHARGING and not charge.on_session and charge.attempt == renewal.attempts
    )
    others = (
        []
        if current_attempt
        else list(
            Charge.objects.filter(renewal=renewal, status=Charge.Status.REQUIRES_ACTION)
            .exclude(pk=charge.pk)
            .values_list("id", flat=True)
        )
    )
    if others:
        transaction.on_commit(lambda: authentications.withdraw_authentications(charge_ids=others, now=now))


def _record_not_sent(*, renewal: Renewal, charge: Charge, result: dict[str, str], rule_on: bool, now: datetime) -> None:
    """An attempt reconciliation proved the processor never received (an outage, a worker gone
    before the call): the attempt is closed on the ledger, but it is not a decline. It spends no
    retry and sends no email; the cycle is due again at once, so a customer whose card is fine is
    never suspended for our outage (docs/invariants.md #11)."""
    charge.status = Charge.Status.FAILED
    charge.decline_kind = Charge.DeclineKind.PROCESSOR_ERROR
    charge.failure_code = result["failure_code"][:100] or NOT_SENT
    charge.failure_message = result["failure_message"][:500]
    charge.settled_at = now
    charge.save()
    if not rule_on:
        _cancel(renewal, now=now, reason="rule_off")
        return
    renewal.status = Renewal.Status.RETRY_SCHEDULED if renewal.failures else Renewal.Status.DUE
    renewal.next_attempt_at = now
    renewal.save()
    _log("renewal_attempt_not_sent", renewal, charge=charge.pk, next_attempt_at=now.isoformat())


def _record_decline(*, renewal: Renewal, charge: Charge, hard: bool, rule_on: bool, now: datetime) -> None:
    policy = RetryPolicy.current()
    renewal.failures += 1
    renewal.last_failure_code = charge.failure_code
    renewal.last_failure_message = charge.failure_message
    renewal.next_attempt_at = None
    if renewal.failures >= policy.alert_after_failures:
        alerts.raise_alert(
            kind=Alert.Kind.REPEATED_FAILURES,
            line=renewal.line,
            renewal=renewal,
            now=now,
            message=f"renewal {renewal.pk} of line {renewal.line_id} declined {renewal.failures} times (last: {charge.failure_code})",
        )
    if not rule_on:
        renewal.save()
        _cancel(renewal, now=now, reason="rule_off")
        return
    if hard:
        renewal.status = Renewal.Status.AWAITING_METHOD
        renewal.save()
        _log("renewal_awaiting_method", renewal, charge=charge.pk, code=charge.failure_code)
        notifications.notify_later(renewal, notifications.NEEDS_ACTION)
        return
    if renewal.failures >= policy.max_failures:
        renewal.status = Renewal.Status.FAILED
        renewal.completed_at = now
        renewal.suspend_at = now + timedelta(hours=policy.grace_hours)
        renewal.save()
        _log(
            "renewal_failed",
            renewal,
            charge=charge.pk,
            code=charge.failure_code,
            suspend_at=renewal.suspend_at.isoformat(),
        )
        alerts.raise_alert(
            kind=Alert.Kind.RENEWAL_FAILED,
            line=renewal.line,
            renewal=renewal,
            now=now,
            message=f"renewal {renewal.pk} of line {renewal.line_id} failed after {renewal.failures} attempts",
        )
        if renewal.suspend_at <= now:
            suspension._suspend_line_for(renewal=renewal, now=now)
        return
    renewal.status = Renewal.Status.RETRY_SCHEDULED
    renewal.next_attempt_at = now + policy.delay_after_failure(renewal.failures)
    renewal.save()
    metrics.count_on_commit(metrics.RETRIES_SCHEDULED)
    _log(
        "renewal_retry_scheduled",
        renewal,
        charge=charge.pk,
        code=charge.failure_code,
        next_attempt_at=renewal.next_attempt_at.isoformat(),
    )
    notifications.notify_later(renewal, notifications.RETRY_SCHEDULED)
