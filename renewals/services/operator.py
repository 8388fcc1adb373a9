"""The operator's actions on a renewal (console admin): retry now, cancel."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import IntegrityError, transaction

from ..models import Renewal
from . import authentications
from ._base import _log
from ._locks import _cancel, _lock_rule_and_renewal

logger = logging.getLogger(__name__)


def retry_now(*, renewal_id: int, now: datetime) -> bool:
    """Operator: bring a scheduled retry, or a renewal waiting for a method, forward to now; a
    failed cycle (the line's latest) gets one more attempt, as a new default method gives it. The
    next dispatcher tick claims it; an attempt in flight is never doubled."""
    with transaction.atomic():
        _rule, renewal = _lock_rule_and_renewal(renewal_id)
        retryable = (
            Renewal.Status.RETRY_SCHEDULED,
            Renewal.Status.AWAITING_METHOD,
            Renewal.Status.DUE,
            Renewal.Status.FAILED,
        )
        if renewal.status not in retryable:
            return False
        if renewal.status == Renewal.Status.FAILED:
            latest = (
                Renewal.objects.filter(line_id=renewal.line_id)
                .order_by("-created_at", "-id")
                .values_list("pk", flat=True)
                .first()
            )
            if latest != renewal.pk:
                return False  # a newer cycle of the line supersedes this one
        previous = renewal.status
        renewal.status = Renewal.Status.DUE
        renewal.next_attempt_at = now
        renewal.completed_at = None
        try:
            with transaction.atomic():
                renewal.save()
        except IntegrityError:  # the line has another open renewal (docs/invariants.md #2): that one goes on
            return False
        _log("renewal_due", renewal, previous=previous, reason="operator_retry_now")
    return True


def cancel_renewal(*, renewal_id: int, now: datetime, reason: str = "operator") -> bool:
    """Operator: cancel an open renewal not yet at the processor."""
    with transaction.atomic():
        _rule, renewal = _lock_rule_and_renewal(renewal_id)
        if renewal.status not in Renewal.OPEN:
            return False
        if renewal.attempt_in_flight:
            return False
        _cancel(renewal, now=now, reason=reason)
        waiting = authentications._authentications_of([renewal])
    authentications.withdraw_authentications(charge_ids=waiting, now=now)
    return True
