"""Celery tasks of accounts. Each one only calls a service; all of them are safe to run twice and on
several workers at once, because the state (outbox rows, notice rows) is in the database. The outbox's
delivery task is in partner/tasks.py."""

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from . import partitions
from .services import line_status, notices


@shared_task(name="accounts.send_expiry_notices", ignore_result=True)
def send_expiry_notices() -> int:
    """Owe a notice to the customers whose package ends within 24 hours (once per package). Run by beat."""
    return notices.send_expiry_notices()


# Every customer message goes out here (docs/notifications.md): kicked after each commit that owes
# one, and run by beat as the safety net and the retry schedule. Safe twice and in parallel: each
# row is sent under its own lock, and a sent row is never sent again.
@shared_task(name="accounts.send_notices", acks_late=True, ignore_result=True)
def send_notices() -> int:
    """Send the customer notices that are due; how many were sent."""
    return notices.send_due_notices()


@shared_task(name="accounts.expire_lines", ignore_result=True)
def expire_lines() -> int:
    """Move the lines whose validity ended to expired and tell the network. Run by beat."""
    return len(line_status.expire_lines(now=timezone.now(), limit=getattr(settings, "LINES_EXPIRE_PER_TICK", 500)))


@shared_task(name="accounts.maintain_usage_partitions", ignore_result=True)
def maintain_usage_partitions() -> int:
    """Make the usage records' day partitions ahead and drop those past the operator's retention
    (docs/usage.md, "History"). Run by beat; safe twice and in parallel (each change takes the
    table's locks and re-checks). Returns how many partitions were dropped."""
    _made, dropped = partitions.maintain(now=timezone.now())
    return len(dropped)
