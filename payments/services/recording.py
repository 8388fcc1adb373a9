"""The one outcome recorder: what the processor said is written on the charge, and the purpose's
handler (payments.outcomes: renewals for renewal charges) moves its own state on, in one
transaction. Money taken for a closed purpose is kept as refund_due."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.services import LineTerminated, apply_package

from .. import outcomes
from ..gateways import ChargeOutcome, OutcomeKind
from ..models import Charge, next_authentication_check
from . import refunds

logger = logging.getLogger(__name__)


FAILED_KINDS = {
    OutcomeKind.SOFT_DECLINE: Charge.DeclineKind.SOFT,
    OutcomeKind.HARD_DECLINE: Charge.DeclineKind.HARD,
}


def record_outcome(*, charge_id: int, outcome: ChargeOutcome, now: datetime | None = None) -> Charge:
    """Record the processor's answer on the ledger. Idempotent and order-proof: a settled charge
    (succeeded, failed, refunded) never changes again, so a duplicate or late webhook, the
    browser's return and reconciliation can all call this. A purpose with a registered handler
    (payments.outcomes: renewals) is handed the outcome, and moves its own state on in the same
    transaction; purchases are recorded here."""
    now = now or timezone.now()
    kind = outcome.kind
    charge = Charge.objects.get(pk=charge_id)
    handler = outcomes.handler_for(charge.purpose)
    if handler is not None and kind not in (OutcomeKind.PROCESSOR_ERROR, OutcomeKind.PENDING):
        handler(charge_id=charge.pk, outcome=outcome, now=now)
        return Charge.objects.get(pk=charge_id)
    with transaction.atomic():
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        if charge.status not in (Charge.Status.PENDING, Charge.Status.REQUIRES_ACTION):
            if kind is OutcomeKind.SUCCEEDED and charge.status == Charge.Status.FAILED:
                # No outcome is dropped: the customer was told this purchase failed (and may have
                # bought again), so the money goes back rather than a package nobody expects.
                return _refund_paid_after_closed(charge=charge, outcome=outcome, now=now)
            logger.info("charge_outcome_ignored charge=%s status=%s kind=%s", charge.pk, charge.status, kind.value)
            return charge
        if outcome.payment_intent_id:
            charge.payment_intent_id = outcome.payment_intent_id
        previous = charge.status
        if kind is OutcomeKind.SUCCEEDED:
            charge.status = Charge.Status.SUCCEEDED
            charge.decline_kind = ""
            charge.failure_code = charge.failure_message = ""
            charge.settled_at = now
            if charge.purpose == Charge.Purpose.PURCHASE and charge.line_id and charge.package_id:
                try:
                    # Atomic with the charge's success: both commit or neither does.
                    line, package = charge.line, charge.package
                    assert line is not None and package is not None  # line_id and package_id, above
                    apply_package(line=line, package=package, now=now)
                except LineTerminated:
                    _refund_purchase_for_terminated_line(charge=charge, now=now)
            elif charge.purpose == Charge.Purpose.PURCHASE and charge.line_id is None and charge.package_id:
                # A new eSIM: its order is written in this transaction (docs/provisioning.md).
                charge.save()
                if not outcomes.new_line_purchase_paid(charge_id=charge.pk, now=now):
                    charge.status = Charge.Status.REFUND_DUE
                    charge.failure_code = "not_provisioned"
                    charge.failure_message = "no app orders new eSIMs: refunded"
                    charge_id = charge.pk
                    transaction.on_commit(lambda: refunds.refund_due_charge(charge_id=charge_id))
        elif kind is OutcomeKind.AUTHENTICATION_REQUIRED:
            if previous != Charge.Status.REQUIRES_ACTION:
                # Looked up at the processor until it settles (reconcile_stale_purchases).
                charge.next_check_at = next_authentication_check(
                    sent_at=charge.sent_at, now=now, cap=settings.PAYMENTS_RECONCILE_AFTER
                )
            charge.status = Charge.Status.REQUIRES_ACTION
            charge.decline_kind = Charge.DeclineKind.AUTHENTICATION_REQUIRED
            charge.failure_code = outcome.failure_code[:100]
            charge.failure_message = outcome.failure_message[:500]
        elif kind in FAILED_KINDS:
            charge.status = Charge.Status.FAILED
            charge.decline_kind = FAILED_KINDS[kind]
            charge.failure_code = outcome.failure_code[:100]
            charge.failure_message = outcome.failure_message[:500]
            charge.settled_at = now
        elif kind is OutcomeKind.PROCESSOR_ERROR:
            # Unknown: stays pending with the reason, reconciled later.
            charge.decline_kind = Charge.DeclineKind.PROCESSOR_ERROR
            charge.failure_code = outcome.failure_code[:100]
            charge.failure_message = outcome.failure_message[:500]
        charge.save()
    logger.info(
        "charge_recorded charge=%s purpose=%s status=%s->%s kind=%s pi=%s code=%s",
        charge.pk,
        charge.purpose,
        previous,
        charge.status,
        kind.value,
        charge.payment_intent_id,
        charge.failure_code,
    )
    return charge


def _refund_purchase_for_terminated_line(*, charge: Charge, now: datetime) -> None:
    """A purchase paid after its line was terminated (the customer finished 3-D Secure late):
    nothing can be applied, so the money goes back, as for a renewal paid for a terminated line
    (docs/precedence.md). Kept on the ledger as `refund_due`, an operator alerted, refunded after
    the commit (refund_due_charge; the payments sweep retries it). The caller saves the charge."""
    charge.status = Charge.Status.REFUND_DUE
    charge.failure_code = "line_terminated"
    charge.failure_message = f"paid after line {charge.line_id} was terminated: refunded"
    logger.error(
        "purchase_paid_for_terminated_line charge=%s line=%s pi=%s: refunding",
        charge.pk,
        charge.line_id,
        charge.payment_intent_id,
    )
    assert charge.line_id is not None  # only a purchase for a line is applied (record_outcome)
    outcomes.alert_operator(
        line_id=charge.line_id,
        reason="line_terminated",
        now=now,
        message=f"purchase charge {charge.pk} ({charge.payment_intent_id}) paid for terminated line "
        f"{charge.line_id}: refunding {charge.amount_minor} {charge.currency}",
    )
    charge_id = charge.pk
    transaction.on_commit(lambda: refunds.refund_due_charge(charge_id=charge_id))


def _refund_paid_after_closed(*, charge: Charge, outcome: ChargeOutcome, now: datetime) -> Charge:
    previous = charge.status
    charge.status = Charge.Status.REFUND_DUE
    charge.payment_intent_id = outcome.payment_intent_id or charge.payment_intent_id
    charge.decline_kind = ""
    charge.failure_code = "paid_after_closed"
    charge.failure_message = "paid after it was recorded as failed: refunded"
    charge.settled_at = now
    charge.save()
    logger.error(
        "charge_paid_after_closed charge=%s purpose=%s was=%s pi=%s: refunding",
        charge.pk,
        charge.purpose,
        previous,
        charge.payment_intent_id,
    )
    if charge.line_id:
        outcomes.alert_operator(
            line_id=charge.line_id,
            reason="paid_after_closed",
            now=now,
            message=f"charge {charge.pk} ({charge.payment_intent_id}) paid after it was recorded as "
            f"{previous}: refunding {charge.amount_minor} {charge.currency}",
        )
    charge_id = charge.pk
    transaction.on_commit(lambda: refunds.refund_due_charge(charge_id=charge_id))
    return charge
