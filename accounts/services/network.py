"""Commands to the network partner (block / unblock data, suspend / resume): the outbox rows.

A command is a NetworkCommand row written in the caller's transaction, so it exists exactly when
the state change that caused it commits; every line state transition writes its commands here.
Delivery (claim, sign, POST, retry, dead-letter) is the partner package's: partner/services/outbox.py
and docs/network-outbox.md. This module only asks for a delivery after commit, by the task's name,
because accounts sits below partner and imports nothing of it (docs/architecture.md).
"""

import logging
from datetime import datetime

from celery import current_app
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from ..models import Line, NetworkCommand

logger = logging.getLogger(__name__)

# The partner's delivery sweep (partner/tasks.py), named rather than imported: see above.
DELIVERY_TASK = "accounts.deliver_network_commands"


class UnknownCommand(ValueError):
    pass


def enqueue_command(*, line: Line, command: str, reason: str = "", now: datetime | None = None) -> NetworkCommand:
    """Write one command for the partner; it is sent after the caller's transaction commits."""
    return enqueue_commands(commands=[(line.pk, command, reason)], now=now)[0]


def enqueue_commands(*, commands: list[tuple[int, str, str]], now: datetime | None = None) -> list[NetworkCommand]:
    """Write several (line_id, command, reason) commands in one INSERT."""
    now = now or timezone.now()
    for _line_id, command, _reason in commands:
        if command not in NetworkCommand.Command.values:
            raise UnknownCommand(command)
    with transaction.atomic():  # the caller's, if it has one: the line locks last until it commits
        sequences = _next_sequences([line_id for line_id, _command, _reason in commands])
        rows = NetworkCommand.objects.bulk_create(
            [
                NetworkCommand(
                    line_id=line_id,
                    command=command,
                    reason=reason[:200],
                    created_at=now,
                    next_attempt_at=now,
                    sequence=sequences[line_id].pop(0),
                )
                for line_id, command, reason in commands
            ]
        )
    for row in rows:
        logger.info(
            "network_command_enqueued command=%s line=%s id=%s reason=%s", row.command, row.line_id, row.pk, row.reason
        )
    if rows:
        transaction.on_commit(kick_delivery)
    return rows


def _next_sequences(line_ids: list[int]) -> dict[int, list[int]]:
    """The lines' next sequence numbers, in order. The line rows are locked first (in id order:
    no deadlock; a no-op for a caller that holds them already), so a line's sequence and its
    commands' ids grow in the same order even when two transactions write to one line."""
    counts: dict[int, int] = {}
    for line_id in line_ids:
        counts[line_id] = counts.get(line_id, 0) + 1
    list(Line.objects.filter(pk__in=counts).order_by("pk").select_for_update().values_list("pk", flat=True))
    last = dict(
        NetworkCommand.objects.filter(line_id__in=counts)
        .values("line_id")
        .annotate(last=Max("sequence"))
        .values_list("line_id", "last")
    )
    return {
        line_id: list(range((last.get(line_id) or 0) + 1, (last.get(line_id) or 0) + n + 1))
        for line_id, n in counts.items()
    }


def kick_delivery() -> None:
    """Ask a worker to deliver now rather than at the next beat. If the broker is down the rows
    wait for the beat sweep, which is why a failure here is only a warning."""
    try:
        current_app.send_task(DELIVERY_TASK, retry=False)
    except Exception as exc:  # kombu raises several connection error types; the rows are safe either way
        logger.warning("network_command_kick_failed error=%s: delivery waits for the beat sweep", exc)
