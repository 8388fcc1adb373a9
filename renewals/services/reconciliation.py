"""Reconciliation: charges whose outcome we do not know (processor errors, slow settlements) are
asked again at the processor, and attempts it never received are released as not sent."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from djstripe.models import PaymentMethod

from payments import gateways
from payments.models import Charge, next_authentication_check

from .. import tasks
from ..models import Alert, Renewal
from . import alerts, authentications, outcomes
from ._base import (
    NOT_SENT,
    PENDING,
    PROCESSOR_ERROR,
    SUCCEEDED,
    ChargeResult,
    _claim_batch_size,
    _kind,
    _log,
    _reconcile_after,
)
from ._locks import _lock_rule_and_renewal

logger = logging.getLogger(__name__)


def _reconcile_per_tick() -> int:
    return getattr(settings, "RENEWALS_RECONCILE_PER_TICK", 100)


# Payment types whose outcome takes days (a debit the bank settles later): looked up daily, not
# every few minutes; anything else is a card-like attempt, looked up minutes after it was sent.
DELAYED_SETTLEMENT_TYPES = ("sepa_debit",)


def _check_interval(method_type: str) -> timedelta:
    if method_type in DELAYED_SETTLEMENT_TYPES:
        return getattr(settings, "RENEWALS_RECONCILE_DELAYED_EVERY", timedelta(days=1))
    return _reconcile_after()


def _payment_method_type(payment_method_id: str) -> str:
    """From the payments mirror only (no processor call): unknown reads as a card, checked sooner."""
    if not payment_method_id:
        return "card"
    return (
        PaymentMethod.objects.filter(id=payment_method_id).values_list("stripe_data__type", flat=True).first() or "card"
    )


def _stuck_alert_after() -> timedelta:
    """A pending attempt not looked up this long after its check was due (starved, or the processor
    unreachable), or in flight longer than any debit settles, raises an alert."""
    return getattr(settings, "RENEWALS_STUCK_CHARGE_ALERT_AFTER", timedelta(hours=1))


def _longest_settlement() -> timedelta:
    return getattr(settings, "RENEWALS_LONGEST_SETTLEMENT", timedelta(days=14))


def _due_to_check(now: datetime) -> Q:
    # Rows from before next_check_at existed are due as card attempts were.
    return Q(next_check_at__lte=now) | Q(next_check_at__isnull=True, sent_at__lt=now - _reconcile_after())


def stale_pending_charges(*, now: datetime, limit: int | None = None) -> list[int]:
    """Pending renewal attempts whose next look-up is due, earliest due first (each charge has its
    own time, see Charge.next_check_at): a backlog of debits in flight cannot starve the rest. So
    are charges of open cycles waiting for 3-D Secure: the customer may have paid at the bank with
    neither the return page nor the webhook reaching us. (Those of closed cycles are withdrawn
    instead, abandoned_authentications.)"""
    return list(
        Charge.objects.filter(purpose=Charge.Purpose.RENEWAL, renewal__isnull=False)
        .filter(
            Q(status=Charge.Status.PENDING) | Q(status=Charge.Status.REQUIRES_ACTION, renewal__status__in=Renewal.OPEN)
        )
        .filter(_due_to_check(now))
        .order_by(F("next_check_at").asc(nulls_first=True), "sent_at", "id")
        .values_list("id", flat=True)[: limit or _claim_batch_size()]
    )


def _check_again_later(*, charge: Charge, now: datetime) -> None:
    """Still pending at the processor: the next look-up by the charge's payment type."""
    Charge.objects.filter(pk=charge.pk, status=Charge.Status.PENDING).update(
        next_check_at=now + _check_interval(_payment_method_type(charge.payment_method_id))
    )


def alert_stuck_charges(*, now: datetime, limit: int | None = None) -> list[int]:
    """No renewal stays `charging` on an attempt past a bound without an operator hearing of it:
    a pending attempt whose look-up is overdue, or older than any settlement. One alert per line."""
    stuck = (
        Charge.objects.filter(purpose=Charge.Purpose.RENEWAL, renewal__isnull=False, status=Charge.Status.PENDING)
        .filter(Q(next_check_at__lt=now - _stuck_alert_after()) | Q(sent_at__lt=now - _longest_settlement()))
        .select_related("renewal__line")
        .order_by("next_check_at", "id")[: limit or _claim_batch_size()]
    )
    alerted = []
    for charge in stuck:
        assert charge.renewal is not None  # renewal__isnull=False above
        alerts.raise_alert(
            kind=Alert.Kind.UNRECONCILED_CHARGE,
            line=charge.renewal.line,
            renewal=charge.renewal,
            now=now,
            message=f"charge {charge.pk} of renewal {charge.renewal_id} pending since {charge.sent_at:%Y-%m-%d %H:%M} UTC: outcome not known",
        )
        alerted.append(charge.pk)
    return alerted


# A reconciliation handed to a worker is not handed out again for this long (a Redis key, not
# state: losing it only means a charge is looked up twice, and recording an outcome is idempotent).
RECONCILE_LEASE_SECONDS = 120


def enqueue_reconciliations(*, charge_ids: list[int]) -> list[int]:
    """Hand each stale charge to a worker (renewals.reconcile_charge), so the tick's claim is not
    held up by processor look-ups; a charge already handed out within the lease is skipped."""
    leased = []
    for charge_id in charge_ids:
        try:
            if not cache.add(f"renewals:reconcile:{charge_id}", 1, timeout=RECONCILE_LEASE_SECONDS):
                continue
        except Exception:  # the cache is Redis too: without it, hand the charge out anyway
            logger.warning("reconcile_lease_unavailable charge=%s", charge_id)
        leased.append(charge_id)
    return tasks.delay_each(tasks.reconcile_charge_task, leased, event="reconcile_enqueue_failed", field="charge")


def reconcile_charge(*, charge_id: int, now: datetime) -> Renewal | None:
    """An attempt whose outcome we never recorded (a worker killed between the processor's answer
    and our commit, a time-out): look its PaymentIntent up and record what really happened. Never
    sends it again; an attempt the processor never saw is closed as not sent, and the renewal
    retries on the policy as a new attempt with a new key. None: still unknown, ask next tick."""
    charge = Charge.objects.select_related("user", "renewal").get(pk=charge_id)
    if (
        charge.status == Charge.Status.REQUIRES_ACTION
        and Charge.objects.filter(authentications._abandoned(now), pk=charge.pk).exists()
    ):
        return authentications.withdraw_authentication(charge_id=charge.pk, now=now)
    if charge.status == Charge.Status.REQUIRES_ACTION:
        return _check_authentication(charge=charge, now=now)
    if charge.status != Charge.Status.PENDING:
        # Settled since it was found stale (by the attempt's own task, a webhook, a twin task).
        logger.info("charge_reconcile_skipped charge=%s status=%s", charge.pk, charge.status)
        return None
    intent = gateways.find_payment_intent_for_charge(charge)  # GatewayError: Stripe unreachable, ask later
    if intent is None:
        outcome: ChargeResult = Outcome(
            kind=NOT_SENT, failure_code="not_sent", failure_message="The payment processor never received this attempt."
        )
    else:
        outcome = gateways.outcome_from_payment_intent(intent)
        if _kind(outcome) in (PENDING, PROCESSOR_ERROR):
            logger.info(
                "charge_reconcile_pending charge=%s payment_intent=%s status=%s",
                charge.pk,
                outcome.payment_intent_id,
                getattr(outcome, "payment_intent_status", ""),
            )
            _check_again_later(charge=charge, now=now)
            if _kind(outcome) == PROCESSOR_ERROR and charge.renewal_id:
                renewal = Renewal.objects.get(pk=charge.renewal_id)
                alerts.raise_alert(
                    kind=Alert.Kind.UNRECONCILED_CHARGE,
                    line=renewal.line,
                    renewal=renewal,
                    now=now,
                    message=f"charge {charge.pk}: PaymentIntent {outcome.payment_intent_id} in an unexpected state",
                )
            return None
    logger.warning(
        "charge_reconciled charge=%s renewal=%s line=%s kind=%s",
        charge.pk,
        charge.renewal_id,
        charge.line_id,
        _kind(outcome),
    )
    return outcomes.record_charge_outcome(charge_id=charge.pk, outcome=outcome, now=now)


def _check_authentication(*, charge: Charge, now: datetime) -> Renewal | None:
    """A charge waiting for 3-D Secure, looked up on its own schedule: a success the customer
    completed at the bank is recorded through the one outcome path (idempotent, whoever records it
    first); anything else leaves it waiting, checked again later. The end of the authentication
    window withdraws it (_withdraw_overdue_authentications), a new attempt or pay-now too."""
    intent = gateways.find_payment_intent_for_charge(charge)  # GatewayError: Stripe unreachable, ask later
    outcome = gateways.outcome_from_payment_intent(intent) if intent is not None else None
    if outcome is None or _kind(outcome) != SUCCEEDED:
        Charge.objects.filter(pk=charge.pk, status=Charge.Status.REQUIRES_ACTION).update(
            next_check_at=next_authentication_check(sent_at=charge.sent_at, now=now, cap=_reconcile_after())
        )
        return None
    logger.warning(
        "authentication_reconciled charge=%s renewal=%s line=%s payment_intent=%s",
        charge.pk,
        charge.renewal_id,
        charge.line_id,
        outcome.payment_intent_id,
    )
    return outcomes.record_charge_outcome(charge_id=charge.pk, outcome=outcome, now=now)


@dataclass
class Outcome:
    kind: str
    payment_intent_id: str = ""
    failure_code: str = ""
    failure_message: str = ""
    payment_method_summary: str = ""


def release_unsent_attempt(*, charge_id: int, now: datetime, previous: Renewal | None = None) -> Renewal:
    """Give back an attempt that our processor write limiter refused before sending it (a THROTTLED
    outcome). Nothing reached the processor: nothing to reconcile and no decline to count, so the
    pending charge row goes and the attempt count is restored. An off-session attempt waits for the
    next claim (the rule re-checked then); a customer's pay-now returns to `previous`, the renewal
    as read before start_pay_now took it."""
    renewal_id = Charge.objects.filter(pk=charge_id).values_list("renewal_id", flat=True).get()
    with transaction.atomic():
        _rule, renewal = _lock_rule_and_renewal(renewal_id)
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        if (
            charge.status != Charge.Status.PENDING
            or charge.payment_intent_id
            or (renewal.status != Renewal.Status.CHARGING and not charge.on_session)
        ):
            _log("release_ignored", renewal, charge=charge.pk, charge_status=charge.status)
            return renewal
        charge.delete()
        if charge.on_session:  # the customer's pay-now: the renewal was never touched
            _log("pay_now_released", renewal, charge=charge_id, reason="processor_busy")
            return renewal
        assert charge.attempt is not None  # an off-session attempt is numbered (prepare_charge)
        renewal.attempts = charge.attempt - 1
        if previous is not None:
            renewal.status, renewal.next_attempt_at, renewal.completed_at = (
                previous.status,
                previous.next_attempt_at,
                previous.completed_at,
            )
        else:
            renewal.status = Renewal.Status.RETRY_SCHEDULED if renewal.failures else Renewal.Status.DUE
            renewal.next_attempt_at = now
        renewal.save()
        _log(
            "renewal_attempt_released",
            renewal,
            charge=charge_id,
            reason="processor_busy",
            next_attempt_at=renewal.next_attempt_at,
        )
    return renewal
