"""The operator's suspend / resume of a line: the state change, the command to the network
partner (the outbox, in the same transaction) and the history row, together or not at all."""
import logging
from datetime import datetime

from django.db import transaction

from ..history import acting
from ..models import Line
from .network import enqueue_command

logger = logging.getLogger(__name__)

SUSPENDABLE = (Line.Status.INACTIVE, Line.Status.ACTIVE, Line.Status.DATA_EXHAUSTED, Line.Status.EXPIRED)


def _status_after_resume(line: Line, now: datetime) -> str:
    if line.expires_at is not None and line.expires_at <= now:
        return Line.Status.EXPIRED
    if line.data_remaining_bytes <= 0:
        return Line.Status.DATA_EXHAUSTED
    return Line.Status.ACTIVE


def suspend_line(*, line_id: int, reason: str, actor, now: datetime) -> bool:
    """False (and nothing written) when the line is already suspended or terminated."""
    with transaction.atomic():
        line = Line.objects.select_for_update().get(pk=line_id)
        if line.status not in SUSPENDABLE:
            return False
        previous = line.status
        line.status = Line.Status.SUSPENDED
        with acting(actor, action="suspended", reason=reason):
            line.save(update_fields=["status", "updated_at"])
        enqueue_command(line=line, command="suspend", reason=reason, now=now)
    logger.info("line_suspended line=%s status=%s->suspended operator=%s", line.pk, previous, getattr(actor, "pk", None))
    return True


def resume_line(*, line_id: int, reason: str, actor, now: datetime) -> bool:
    """Only a suspended line resumes; it comes back active, or out of data / expired if it is."""
    with transaction.atomic():
        line = Line.objects.select_for_update().get(pk=line_id)
        if line.status != Line.Status.SUSPENDED:
            return False
        line.status = _status_after_resume(line, now)
        with acting(actor, action="resumed", reason=reason):
            line.save(update_fields=["status", "updated_at"])
        enqueue_command(line=line, command="resume", reason=reason, now=now)
    logger.info("line_resumed line=%s status=suspended->%s operator=%s", line.pk, line.status, getattr(actor, "pk", None))
    return True
