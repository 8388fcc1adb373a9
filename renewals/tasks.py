"""Celery entry points of the engine: they take ids, load rows and call a service. State lives in
the database (docs/invariants.md #4): a task delivered twice, or never, changes nothing the next
tick cannot put right."""

import logging

from celery import shared_task
from django.utils import timezone
from kombu.exceptions import OperationalError

from payments.gateways import GatewayError

from .services import charging, dispatcher, reconciliation

logger = logging.getLogger(__name__)


def delay_each(task, ids: list[int], *, event: str, field: str) -> list[int]:
    """`task.delay(id)` for each id; the ids enqueued. With the broker down the work is still a row
    in the database, so a sweep hands it out again once Redis is back (docs/invariants.md #4): log
    and go on."""
    enqueued = []
    for pk in ids:
        try:
            task.delay(pk)
        except OperationalError:
            logger.warning("%s %s=%s reason=broker_unavailable", event, field, pk)
            continue
        enqueued.append(pk)
    return enqueued


def delay_batches(task, batches: list[list[int]], *, event: str, field: str) -> list[int]:
    """`task.delay(ids)` for each batch of ids; the ids enqueued (a broker down: as delay_each)."""
    enqueued = []
    for ids in batches:
        try:
            task.delay(ids)
        except OperationalError:
            logger.warning("%s %s=%s reason=broker_unavailable", event, field, ",".join(map(str, ids)))
            continue
        enqueued.extend(ids)
    return enqueued


@shared_task(name="renewals.dispatch_renewals", ignore_result=True)
def dispatch_renewals() -> str:
    """Beat's tick (every RENEWALS_DISPATCH_INTERVAL): claim due renewals and enqueue their charges."""
    return str(dispatcher.run_dispatcher(now=timezone.now()))


# acks_late + reject_on_worker_lost: a worker killed mid-task gets the task redelivered; the
# charge step finds the attempt in flight (a pending Charge) and sends nothing twice.
@shared_task(name="renewals.charge_renewal", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def charge_renewal_task(renewal_id: int) -> str:
    renewal = charging.charge_renewal(renewal_id=renewal_id)
    return renewal.status


# The dispatcher's message: several claimed renewals, each charged by the one-renewal step above
# on a small thread pool (docs/performance-renewals.md). Redelivered whole, it is as safe as the
# single task delivered again: each renewal already charged or in flight is skipped.
@shared_task(name="renewals.charge_renewals", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def charge_renewals_task(renewal_ids: list[int]) -> dict[str, int]:
    statuses = charging.charge_renewals(renewal_ids=renewal_ids)
    summary: dict[str, int] = {}
    for status in statuses.values():
        summary[status] = summary.get(status, 0) + 1
    return summary


# Enqueued by the dispatcher for each stale pending charge. Safe twice and in parallel: a charge
# settled meanwhile is skipped, and the outcome is recorded under the renewal's and charge's row
# locks, where a second recording of a settled attempt changes nothing.
@shared_task(name="renewals.reconcile_charge", acks_late=True, ignore_result=True)
def reconcile_charge_task(charge_id: int) -> str:
    try:
        renewal = reconciliation.reconcile_charge(charge_id=charge_id, now=timezone.now())
    except GatewayError as exc:  # the processor did not answer: a later tick asks again
        logger.warning("charge_reconcile_unreachable charge=%s code=%s", charge_id, exc.code)
        return "unreachable"
    return renewal.status if renewal is not None else "unresolved"
