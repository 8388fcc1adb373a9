"""Celery tasks of the partner side. The task keeps its first name (beat and the kick after
commit in accounts/services/network.py call it by name)."""

from celery import shared_task

from .services import outbox


@shared_task(name="accounts.deliver_network_commands", ignore_result=True)
def deliver_network_commands() -> dict:
    """Deliver due network commands. Run by beat (the safety net) and kicked after a commit."""
    report = outbox.deliver_due_commands()
    return {"delivered": len(report.delivered), "retrying": len(report.retrying), "failed": len(report.failed)}
