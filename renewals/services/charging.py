"""The charge step: prepare the attempt under the locks, then call the processor off-session with
no lock held, then record the outcome (outcomes.py)."""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.services import notices
from payments import gateways
from payments.models import Charge
from payments.selectors import method_for_off_session
from payments.services.on_session import withdraw_open_payment

from .. import notifications
from ..models import Renewal
from . import outcomes, precedence, reconciliation
from ._base import PENDING, PROCESSOR_ERROR, THROTTLED, _kind, _log, new_renewal_charge
from ._locks import _UNKNOWN, _cancel, _lock_rule_and_renewal, _Unknown

logger = logging.getLogger(__name__)


@dataclass
class PreparedCharge:
    charge: Charge
    customer_id: str
    payment_method_id: str


def prepare_charge(
    *,
    renewal_id: int,
    customer_id: str,
    payment_method_id: str,
    now: datetime,
    payment_method_summary: str = "",
    rule_id: int | None | _Unknown = _UNKNOWN,
    payment_method_type: str | None = None,
) -> PreparedCharge | None:
    """Write the attempt's `Charge` row and idempotency key, or say why nothing may be sent.

    Runs under the rule's row lock: a rule turned off before this commits cancels the renewal
    (docs/invariants.md #3); turned off after, the attempt is already at the processor and its outcome is
    recorded. A pending charge means an attempt is in flight or unknown: never a second one.
    """
    method_type = payment_method_type or reconciliation._payment_method_type(payment_method_id)
    with transaction.atomic():
        rule, renewal = _lock_rule_and_renewal(renewal_id, rule_id=rule_id)
        if renewal.status != Renewal.Status.CHARGING:
            _log("charge_skipped", renewal, reason="not_charging")
            return None
        if renewal.attempt_in_flight:
            _log("charge_skipped", renewal, reason="attempt_in_flight")
            return None
        if rule is None or not rule.enabled:
            _cancel(renewal, now=now, reason="rule_off")
            return None
        held = precedence._line_holds_renewals(renewal.line)
        if held:
            # Precedence: termination and the operator's suspension both outrank payment state.
            _cancel(renewal, now=now, reason=held)
            return None
        if renewal.payer_id is not None and renewal.line.owner_id != renewal.payer_id:
            # The line was given to someone else: this cycle's payer is no longer its owner, and the new
            # owner never pays for a rule they did not set (docs/precedence.md).
            _cancel(renewal, now=now, reason=precedence.LINE_OWNER_CHANGED)
            return None
        if not payment_method_id:
            renewal.status = Renewal.Status.AWAITING_METHOD
            renewal.last_failure_code = "no_payment_method"
            renewal.last_failure_message = ""
            renewal.save()
            _log("renewal_awaiting_method", renewal, reason="no_payment_method")
            notifications.notify_later(renewal, notifications.NEEDS_ACTION)
            return None
        line = renewal.line
        if line.owner_id is None:
            # A cycle with no payer kept, whose line lost its owner after charge_renewal read it:
            # nobody to charge (a charge's customer is NOT NULL), cancelled as charge_renewal does.
            _cancel(renewal, now=now, reason="line_has_no_owner")
            return None
        attempt = renewal.attempts + 1
        charge = new_renewal_charge(
            renewal=renewal,
            line=line,
            attempt=attempt,
            idempotency_key=f"renewal-{renewal.pk}-attempt-{attempt}-{uuid.uuid4().hex}",
            payment_method_id=payment_method_id,
            payment_method_summary=payment_method_summary,
            now=now,
            next_check_at=now + reconciliation._check_interval(method_type),
        )
        renewal.attempts = attempt
        renewal.save(update_fields=["attempts", "updated_at"])
        _log("charge_prepared", renewal, charge=charge.pk, amount=charge.amount_minor, currency=charge.currency)
    return PreparedCharge(charge=charge, customer_id=customer_id, payment_method_id=payment_method_id)


def charge_renewal(*, renewal_id: int, now: datetime | None = None) -> Renewal:
    """The charge step: prepare (commit), call the processor off-session, record the outcome in a
    new transaction. Safe to run twice: the second run finds the renewal not `charging` or an
    attempt in flight, and sends nothing."""
    waiting = Charge.objects.filter(renewal=OuterRef("pk"), status=Charge.Status.REQUIRES_ACTION)
    renewal = (
        Renewal.objects.select_related("line__owner", "rule", "payer")
        .annotate(payment_waiting=Exists(waiting))
        .get(pk=renewal_id)
    )
    if renewal.status != Renewal.Status.CHARGING:
        _log("charge_skipped", renewal, reason="not_charging")
        return renewal
    # The cycle's payer, never whoever owns the line now (prepare_charge cancels if they differ).
    user = renewal.payer if renewal.payer_id is not None else renewal.line.owner
    if user is None:
        with transaction.atomic():
            _rule, locked = _lock_rule_and_renewal(renewal_id)
            if locked.status == Renewal.Status.CHARGING and not locked.attempt_in_flight:
                _cancel(locked, now=now or timezone.now(), reason="line_has_no_owner")
        return locked
    if renewal.payment_waiting and not _withdraw_open_payments(renewal_id=renewal_id):
        return Renewal.objects.get(pk=renewal_id)
    # Look-ups happen outside any row lock; the rule itself is re-read under the lock. One read of
    # the payments mirror gives the method, its customer and its summary: a method attached to a
    # customer means the processor's customer exists, so ensure_customer (a locking transaction)
    # is needed only for a method the mirror does not hold.
    rule_method = renewal.rule.payment_method_id if renewal.rule else ""
    method = method_for_off_session(user=user, payment_method_id=rule_method)
    method_type = None  # read from the mirror by prepare_charge when the method is not in hand
    if method is not None:
        payment_method_id, customer_id, summary = method.id, method.customer_id, gateways.payment_method_summary(method)
        method_type = method.type or "card"
    elif rule_method:
        payment_method_id, customer_id, summary = rule_method, gateways.ensure_customer(user).id, ""
    else:
        payment_method_id = customer_id = summary = ""
    prepared = prepare_charge(
        renewal_id=renewal_id,
        customer_id=customer_id,
        payment_method_id=payment_method_id,
        now=now or timezone.now(),
        payment_method_summary=summary,
        rule_id=renewal.rule_id,
        payment_method_type=method_type,
    )
    if prepared is None:
        return Renewal.objects.get(pk=renewal_id)
    outcome = gateways.charge_off_session(
        charge=prepared.charge,
        customer_id=prepared.customer_id,
        payment_method_id=prepared.payment_method_id,
        method_type=method_type,
    )
    if _kind(outcome) == THROTTLED:
        return reconciliation.release_unsent_attempt(charge_id=prepared.charge.pk, now=now or timezone.now())
    if _kind(outcome) in (PROCESSOR_ERROR, PENDING):
        # Unknown (time-out, connection reset, 5xx) or not settled yet: the charge stays pending and
        # is reconciled by looking its PaymentIntent up, never re-sent blindly (docs/invariants.md #1).
        logger.warning(
            "charge_outcome_unknown renewal=%s line=%s charge=%s kind=%s code=%s",
            renewal_id,
            prepared.charge.line_id,
            prepared.charge.pk,
            _kind(outcome),
            getattr(outcome, "failure_code", ""),
        )
        return Renewal.objects.get(pk=renewal_id)
    return outcomes._record_outcome(
        renewal_id=renewal_id, charge_id=prepared.charge.pk, outcome=outcome, now=now or timezone.now()
    )


def charge_renewals(*, renewal_ids: list[int], threads: int | None = None) -> dict[int, str]:
    """The charge step for several claimed renewals, each exactly charge_renewal (its own
    transactions, locks and idempotency key), run on up to `threads` threads so that one renewal's
    processor round trip overlaps another's database work (docs/performance-renewals.md). Returns
    each renewal's status; one that raised is logged and left `charging` for requeue_lost_claims,
    as a failed single task would be, and the others go on."""
    threads = max(1, threads or int(getattr(settings, "RENEWALS_CHARGE_THREADS", 4)))
    pending = deque(renewal_ids)
    statuses: dict[int, str] = {}

    def work() -> None:
        try:
            while True:
                try:
                    renewal_id = pending.popleft()  # atomic: each id to one thread
                except IndexError:
                    return
                try:
                    statuses[renewal_id] = charge_renewal(renewal_id=renewal_id).status
                except Exception:
                    logger.exception("charge_error renewal=%s", renewal_id)
                    statuses[renewal_id] = "error"
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection.close()  # a pool thread's own connection ends with it

    with notices.one_kick():  # one email kick for the batch, not one per renewal
        helpers = [
            threading.Thread(target=contextvars.copy_context().run, args=(work,), daemon=True)
            for _ in range(min(threads, len(renewal_ids)) - 1)
        ]
        for helper in helpers:
            helper.start()
        work()  # the calling thread takes its share and keeps its connection
        for helper in helpers:
            helper.join()
    return statuses


def _withdraw_open_payments(*, renewal_id: int) -> bool:
    """Before an off-session attempt, withdraw the renewal's intents still waiting for 3-D Secure
    (a pay-now left at the bank's page, a cycle that timed out waiting): otherwise the customer
    could complete one next to our new attempt and pay twice. False: one was paid (the renewal has
    succeeded) or could not be withdrawn; no attempt now, requeue_lost_claims brings it back."""
    for charge in Charge.objects.filter(renewal_id=renewal_id, status=Charge.Status.REQUIRES_ACTION):
        if withdraw_open_payment(charge).status != Charge.Status.FAILED:
            logger.warning(
                "charge_skipped renewal=%s line=%s reason=open_payment charge=%s", renewal_id, charge.line_id, charge.pk
            )
            return False
    return True
