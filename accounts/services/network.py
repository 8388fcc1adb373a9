"""Commands to the network partner (block / unblock data, suspend / resume) through an outbox.

A command is a NetworkCommand row written in the caller's transaction, so it exists exactly when
the state change that caused it commits. Delivery is a sweep (Celery beat, plus a kick after
commit) that claims due rows, POSTs them signed to NETWORK_WEBHOOK_URL and records the outcome on
the row: retries and their backoff are rows, not countdown tasks, so losing Redis loses nothing.

Per line, commands are delivered in the order they were written: only the oldest pending command of
a line is ever claimed. Delivery is at least once (a sender that dies after the partner's 2xx and
before our commit re-sends after its lease); the payload's `id` lets the partner drop a repeat.
"""
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from .. import partner_signature
from ..models import Line, NetworkCommand

logger = logging.getLogger(__name__)

# Delay after the n-th failed attempt; the last one repeats until MAX_ATTEMPTS.
RETRY_DELAYS = [
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=3),
]
MAX_ATTEMPTS = 20  # about two and a half days of trying before an operator must look
# A claimed command is not claimed again before this, so two sweeps never send it at once;
# it must exceed the HTTP time-out by a wide margin.
DELIVERY_LEASE = timedelta(minutes=2)
HTTP_TIMEOUT = (5, 15)  # connect, read (seconds)
SWEEP_ROUNDS = 20  # each round delivers the head of every line's queue; bounded so a sweep ends


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
    rows = NetworkCommand.objects.bulk_create(
        [
            NetworkCommand(line_id=line_id, command=command, reason=reason[:200], created_at=now, next_attempt_at=now)
            for line_id, command, reason in commands
        ]
    )
    for row in rows:
        logger.info("network_command_enqueued command=%s line=%s id=%s reason=%s", row.command, row.line_id, row.pk, row.reason)
    if rows:
        transaction.on_commit(_kick_delivery)
    return rows


def _kick_delivery() -> None:
    """Ask a worker to deliver now rather than at the next beat. If the broker is down the rows
    wait for the beat sweep, which is why a failure here is only a warning."""
    from ..tasks import deliver_network_commands

    try:
        deliver_network_commands.apply_async(retry=False)
    except Exception as exc:  # kombu raises several connection error types; the rows are safe either way
        logger.warning("network_command_kick_failed error=%s: delivery waits for the beat sweep", exc)


@dataclass
class SweepReport:
    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def claim_due_commands(*, now: datetime, limit: int = 100) -> list[NetworkCommand]:
    """Claim the oldest pending command of each line whose attempt is due, under a lease.

    A line's later commands are invisible while an older one is pending, so a retrying
    `block_data` is never overtaken by the `unblock_data` written after it.
    """
    older_pending = NetworkCommand.objects.filter(
        line_id=OuterRef("line_id"), status=NetworkCommand.Status.PENDING, id__lt=OuterRef("id")
    )
    with transaction.atomic():
        claimed = list(
            NetworkCommand.objects.filter(status=NetworkCommand.Status.PENDING, next_attempt_at__lte=now)
            .exclude(Exists(older_pending))
            .order_by("id")
            .select_for_update(skip_locked=True)
            .select_related("line")[:limit]
        )
        if claimed:
            NetworkCommand.objects.filter(pk__in=[c.pk for c in claimed]).update(
                attempts=F("attempts") + 1, next_attempt_at=now + DELIVERY_LEASE
            )
    for command in claimed:
        command.attempts += 1
    return claimed


def payload(command: NetworkCommand) -> dict:
    return {
        "id": command.pk,
        "command": command.command,
        "iccid": command.line.iccid,
        "reason": command.reason,
        "created_at": command.created_at.isoformat(),
    }


def deliver(*, command: NetworkCommand, now: datetime) -> None:
    """Send one claimed command and record the outcome on its row."""
    body = json.dumps(payload(command), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        partner_signature.HEADER: partner_signature.sign(secret=settings.NETWORK_WEBHOOK_SECRET, body=body, now=now),
        "Idempotency-Key": f"network-command-{command.pk}",
    }
    code, error = None, ""
    try:
        response = requests.post(settings.NETWORK_WEBHOOK_URL, data=body, headers=headers, timeout=HTTP_TIMEOUT)
        code = response.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}: {response.text[:200]}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    if not error:
        _record_delivered(command=command, code=code, now=timezone.now())
    else:
        _record_failure(command=command, code=code, error=error, now=timezone.now())


def _record_delivered(*, command: NetworkCommand, code: int, now: datetime) -> None:
    NetworkCommand.objects.filter(pk=command.pk, status=NetworkCommand.Status.PENDING).update(
        status=NetworkCommand.Status.DELIVERED, delivered_at=now, last_response_code=code, last_error=""
    )
    command.status, command.delivered_at, command.last_response_code = NetworkCommand.Status.DELIVERED, now, code
    logger.info(
        "network_command_delivered command=%s line=%s id=%s attempts=%s code=%s",
        command.command, command.line_id, command.pk, command.attempts, code,
    )


def _record_failure(*, command: NetworkCommand, code: int | None, error: str, now: datetime) -> None:
    if command.attempts >= MAX_ATTEMPTS:
        status, next_attempt_at = NetworkCommand.Status.FAILED, now
        # Later commands of the line go ahead from now on; an operator has to look at this one.
        logger.error(
            "network_command_failed command=%s line=%s id=%s attempts=%s code=%s error=%s",
            command.command, command.line_id, command.pk, command.attempts, code, error,
        )
    else:
        status = NetworkCommand.Status.PENDING
        next_attempt_at = now + RETRY_DELAYS[min(command.attempts, len(RETRY_DELAYS)) - 1]
        logger.warning(
            "network_command_retry_scheduled command=%s line=%s id=%s attempts=%s code=%s next_attempt_at=%s error=%s",
            command.command, command.line_id, command.pk, command.attempts, code, next_attempt_at.isoformat(), error,
        )
    NetworkCommand.objects.filter(pk=command.pk, status=NetworkCommand.Status.PENDING).update(
        status=status, next_attempt_at=next_attempt_at, last_response_code=code, last_error=error[:500]
    )
    command.status, command.next_attempt_at, command.last_response_code, command.last_error = status, next_attempt_at, code, error


def deliver_due_commands(*, now: datetime | None = None, limit: int = 100) -> SweepReport:
    """One sweep: deliver every due command, each line's in order. Safe to run on several workers
    at once (claims skip locked rows and leave a lease)."""
    report = SweepReport()
    if not settings.NETWORK_WEBHOOK_URL:
        logger.warning("network_commands_not_sent: NETWORK_WEBHOOK_URL is not set")
        return report
    for _round in range(SWEEP_ROUNDS):
        # A line's next command becomes due the moment its head is delivered: keep going.
        claim_time = now or timezone.now()
        claimed = claim_due_commands(now=claim_time, limit=limit)
        if not claimed:
            break
        for command in claimed:
            deliver(command=command, now=now or timezone.now())
            {
                NetworkCommand.Status.DELIVERED: report.delivered,
                NetworkCommand.Status.PENDING: report.retrying,
                NetworkCommand.Status.FAILED: report.failed,
            }[command.status].append(command.pk)
    return report


@transaction.atomic
def retry_command_now(*, command: NetworkCommand, now: datetime | None = None) -> NetworkCommand:
    """Operator action: send a pending command at the next sweep instead of at its backoff time,
    or put a command that gave up back in the queue with a fresh attempt count. A delivered
    command is left alone."""
    now = now or timezone.now()
    pending = NetworkCommand.objects.filter(pk=command.pk, status=NetworkCommand.Status.PENDING)
    failed = NetworkCommand.objects.filter(pk=command.pk, status=NetworkCommand.Status.FAILED)
    # A lease never reaches further than DELIVERY_LEASE: a later time is a backoff, safe to cut short.
    # A command inside its lease may be on the wire right now and is left alone.
    updated = pending.filter(next_attempt_at__gt=now + DELIVERY_LEASE).update(next_attempt_at=now)
    updated += failed.update(status=NetworkCommand.Status.PENDING, attempts=0, next_attempt_at=now)
    if updated:
        logger.info("network_command_retry_now command=%s line=%s id=%s", command.command, command.line_id, command.pk)
        transaction.on_commit(_kick_delivery)
    command.refresh_from_db()
    return command
