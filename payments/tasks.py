"""Celery tasks of the payments app: they only call services (safe to run twice)."""

from celery import shared_task

from . import processor_limit
from .services import on_session, refunds, webhooks


@shared_task(name="payments.reconcile_pending_purchases")
def reconcile_pending_purchases() -> list[int]:
    # Refunds whose answer was lost are looked up, and refunds owed (money taken after its purpose
    # closed) retried, on the same sweep.
    refunds.reconcile_refunds_in_doubt()
    refunds.refund_due_charges()
    return on_session.reconcile_stale_purchases()


@shared_task(name="payments.log_processor_writes")
def log_processor_writes() -> None:
    processor_limit.log_write_stats()


@shared_task(name="payments.prune_webhook_triggers")
def prune_webhook_triggers() -> tuple[int, int]:
    return webhooks.prune_webhook_triggers()
