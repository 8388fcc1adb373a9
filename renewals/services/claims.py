"""Claiming due renewals for the charge step (skip-locked rows), and handing lost claims out again."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction

from payments.models import Charge

from .. import tasks
from ..models import Renewal
from ._base import _claim_batch_size, _reconcile_after

logger = logging.getLogger(__name__)


def claim_due_renewals(*, now: datetime, limit: int | None = None, renewal_ids: list[int] | None = None) -> list[int]:
    """Claim due work (docs/invariants.md #4): rows locked with SKIP LOCKED, so two dispatchers at once get
    disjoint batches; claimed rows become `charging` before the lock is released."""
    limit = limit or _claim_batch_size()
    with transaction.atomic():
        # A pending charge here is the customer's pay-now at the processor: wait for its outcome.
        due = Renewal.objects.filter(status__in=Renewal.CLAIMABLE, next_attempt_at__lte=now).exclude(
            charges__status=Charge.Status.PENDING
        )
        if renewal_ids is not None:
            due = due.filter(pk__in=renewal_ids)
        claimed = list(
            due.select_for_update(skip_locked=True)
            .order_by("next_attempt_at", "id")
            .values_list("id", "line_id")[:limit]
        )
        ids = [renewal_id for renewal_id, _line_id in claimed]
        if ids:
            Renewal.objects.filter(pk__in=ids).update(
                status=Renewal.Status.CHARGING, claimed_at=now, next_attempt_at=None
            )
    for renewal_id, line_id in claimed:
        logger.info("renewal_claimed renewal=%s line=%s status=charging", renewal_id, line_id)
    return ids


def _enqueue_charges(renewal_ids: list[int]) -> None:
    """One Celery message per RENEWALS_CHARGE_BATCH_SIZE claimed renewals (docs/performance-renewals.md).
    A claim is a row: requeue_lost_claims hands it out again once the broker is back."""
    size = max(1, int(getattr(settings, "RENEWALS_CHARGE_BATCH_SIZE", 10)))
    batches = [renewal_ids[i : i + size] for i in range(0, len(renewal_ids), size)]
    tasks.delay_batches(tasks.charge_renewals_task, batches, event="charge_enqueue_failed", field="renewals")


def dispatch_now(*, renewal_ids: list[int], now: datetime) -> list[int]:
    """Claim these renewals (if still due) and hand them to the workers at once."""
    ids = claim_due_renewals(now=now, renewal_ids=renewal_ids, limit=len(renewal_ids))
    _enqueue_charges(ids)
    return ids


def requeue_lost_claims(*, now: datetime) -> list[int]:
    """Claimed renewals whose task never ran (a broker lost, a worker gone before it started): no
    attempt is in flight for them, so running the charge step again is safe."""
    stale = now - _reconcile_after()
    with transaction.atomic():
        lost = list(
            Renewal.objects.select_for_update(skip_locked=True)
            .filter(status=Renewal.Status.CHARGING, claimed_at__lt=stale)
            .exclude(charges__status=Charge.Status.PENDING)
            .values_list("id", "line_id")[: _claim_batch_size()]
        )
        ids = [renewal_id for renewal_id, _line_id in lost]
        if ids:
            Renewal.objects.filter(pk__in=ids).update(claimed_at=now)
    for renewal_id, line_id in lost:
        logger.warning("renewal_requeued renewal=%s line=%s reason=claim_without_attempt", renewal_id, line_id)
    return ids
