"""Delivery of the network outbox: the commands accounts writes (accounts/services/network.py) are
sent to the partner from here.

A command is a NetworkCommand row written in the caller's transaction, so it exists exactly when
the state change that caused it commits. Delivery is a sweep (Celery beat, plus a kick after
commit) that claims due rows, POSTs them signed to NETWORK_WEBHOOK_URL and records the outcome on
the row: retries and their backoff are rows, not countdown tasks, so losing Redis loses nothing.

Per line, commands are delivered in the order they were written: only the oldest pending command of
a line is ever claimed. Delivery is at least once (a sender that dies after the partner's 2xx and
before our commit re-sends after its lease); the payload's `id` lets the partner drop a repeat.

Order at the partner (docs/network-outbox.md): every command carries its line's `sequence`, which
grows in the order the commands were written. A claim stamps its rows with a fencing token, and a
sender re-checks (and renews) its token on the row right before it sends: a sender whose claim
was taken over never sends its stale copy. Only a 2xx from the exact URL is a delivery (redirects
are not followed). A command the partner refuses for good (a 4xx other than those that can pass)
is dead-lettered at once, with an alert, so the line's later commands go ahead.
"""

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from accounts.models import Line, NetworkCommand
from accounts.services.network import enqueue_command, kick_delivery

from .. import signature as partner_signature

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
MAX_ATTEMPTS = 20  # about 44 hours of trying before an operator must look (docs/network-outbox.md)
# A claimed command is not claimed again before this, so two sweeps never send it at once;
# it must exceed the HTTP time-out by a wide margin.
DELIVERY_LEASE = timedelta(minutes=2)
HTTP_TIMEOUT = (5, 15)  # connect, read (seconds)
# 4xx answers that can pass without the command changing: our signature or clock (fixed by
# configuration, for every command at once), the partner's time-out, its rate limit. Every other
# 4xx is the partner refusing this command for good: retrying it only holds the line's queue.
RETRYABLE_CLIENT_ERRORS = {401, 403, 408, 425, 429}
# Which switch a command sets: a later command on the same switch overrides an earlier one.
SWITCH = {"suspend": "service", "resume": "service", "block_data": "data", "unblock_data": "data"}
SWEEP_ROUNDS = 20  # each round delivers the head of every line's queue; bounded so a sweep ends


@dataclass
class SweepReport:
    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    # Claimed, then taken over by another sender before this one sent it: not sent.
    lost: list[int] = field(default_factory=list)


def claim_due_commands(*, now: datetime, limit: int = 100) -> list[NetworkCommand]:
    """Claim the oldest pending command of each line whose attempt is due, under a lease.

    A line's later commands are invisible while an older one is pending, so a retrying
    `block_data` is never overtaken by the `unblock_data` written after it.
    """
    older_pending = NetworkCommand.objects.filter(
        line_id=OuterRef("line_id"), status=NetworkCommand.Status.PENDING, id__lt=OuterRef("id")
    )
    token = uuid.uuid4()
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
                attempts=F("attempts") + 1, next_attempt_at=now + DELIVERY_LEASE, lease_token=token
            )
    for command in claimed:
        command.attempts += 1
        command.lease_token = token
    return claimed


def payload(command: NetworkCommand) -> dict:
    return {
        "id": command.pk,
        "command": command.command,
        "iccid": command.line.iccid,
        "reason": command.reason,
        "created_at": command.created_at.isoformat(),
        "sequence": command.sequence,
    }


def _still_ours(command: NetworkCommand, now: datetime) -> bool:
    """The fencing check, right before the send: the row still carries this sender's token (no
    other sender claimed it since) and is still pending; the lease is renewed from now, so that
    nobody claims it while this send is on the wire (DELIVERY_LEASE >> HTTP_TIMEOUT)."""
    return bool(
        NetworkCommand.objects.filter(
            pk=command.pk, status=NetworkCommand.Status.PENDING, lease_token=command.lease_token
        ).update(next_attempt_at=now + DELIVERY_LEASE)
    )


def deliver(*, command: NetworkCommand, now: datetime) -> bool:
    """Send one claimed command and record the outcome on its row. False (nothing sent) when the
    claim was taken over by another sender meanwhile."""
    if not _still_ours(command, now):
        logger.warning(
            "network_command_claim_lost command=%s line=%s id=%s: not sent",
            command.command,
            command.line_id,
            command.pk,
        )
        return False
    body = json.dumps(payload(command), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        # During a rotation both secrets sign (docs/deploying.md#rotating-secrets): the partner
        # accepts the command whichever one it holds.
        partner_signature.HEADER: partner_signature.sign(
            secret=settings.NETWORK_WEBHOOK_SECRET,
            previous_secret=settings.NETWORK_WEBHOOK_SECRET_PREVIOUS,
            body=body,
            now=now,
        ),
        "Idempotency-Key": f"network-command-{command.pk}",
    }
    code, error = None, ""
    try:
        # A redirect is not followed: only the configured URL's own 2xx says the partner took it.
        response = requests.post(
            settings.NETWORK_WEBHOOK_URL, data=body, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False
        )
        code = response.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}: {response.text[:200]}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    if not error:
        _record_delivered(command=command, code=code, now=timezone.now())
    else:
        permanent = code is not None and 400 <= code < 500 and code not in RETRYABLE_CLIENT_ERRORS
        _record_failure(command=command, code=code, error=error, now=timezone.now(), permanent=permanent)
    return True


def _record_delivered(*, command: NetworkCommand, code: int, now: datetime) -> None:
    NetworkCommand.objects.filter(
        pk=command.pk, status=NetworkCommand.Status.PENDING, lease_token=command.lease_token
    ).update(status=NetworkCommand.Status.DELIVERED, delivered_at=now, last_response_code=code, last_error="")
    command.status, command.delivered_at, command.last_response_code = NetworkCommand.Status.DELIVERED, now, code
    logger.info(
        "network_command_delivered command=%s line=%s id=%s attempts=%s code=%s",
        command.command,
        command.line_id,
        command.pk,
        command.attempts,
        code,
    )


def _record_failure(
    *, command: NetworkCommand, code: int | None, error: str, now: datetime, permanent: bool = False
) -> None:
    if permanent or command.attempts >= MAX_ATTEMPTS:
        # Dead-lettered: later commands of the line go ahead from now on; the operations page and
        # /healthz show it until an operator retries it (retry_command_now).
        status, next_attempt_at = NetworkCommand.Status.FAILED, now
        if permanent:
            error = f"refused by the partner (permanent): {error}"
        logger.error(
            "network_command_failed command=%s line=%s id=%s attempts=%s code=%s permanent=%s error=%s",
            command.command,
            command.line_id,
            command.pk,
            command.attempts,
            code,
            permanent,
            error,
        )
    else:
        status = NetworkCommand.Status.PENDING
        next_attempt_at = now + RETRY_DELAYS[min(command.attempts, len(RETRY_DELAYS)) - 1]
        logger.warning(
            "network_command_retry_scheduled command=%s line=%s id=%s attempts=%s code=%s next_attempt_at=%s error=%s",
            command.command,
            command.line_id,
            command.pk,
            command.attempts,
            code,
            next_attempt_at.isoformat(),
            error,
        )
    NetworkCommand.objects.filter(
        pk=command.pk, status=NetworkCommand.Status.PENDING, lease_token=command.lease_token
    ).update(status=status, next_attempt_at=next_attempt_at, last_response_code=code, last_error=error[:500])
    command.status, command.next_attempt_at, command.last_response_code, command.last_error = (
        status,
        next_attempt_at,
        code,
        error,
    )


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
            if not deliver(command=command, now=now or timezone.now()):
                report.lost.append(command.pk)
                continue
            {
                NetworkCommand.Status.DELIVERED: report.delivered,
                NetworkCommand.Status.PENDING: report.retrying,
                NetworkCommand.Status.FAILED: report.failed,
            }[command.status].append(command.pk)
    return report


@transaction.atomic
def retry_command_now(*, command: NetworkCommand, now: datetime | None = None) -> NetworkCommand:
    """Operator action: send a pending command at the next sweep instead of at its backoff time,
    or deal with a dead-lettered one. The line's last command goes back in the queue as it is. An
    older one is never sent behind commands written after it: if a later command of the line sets
    the same switch, it is overridden and nothing is sent; otherwise it is written again as a new
    command after the line's current state (a new sequence); either way it becomes `superseded`.
    A delivered command is left alone."""
    now = now or timezone.now()
    pending = NetworkCommand.objects.filter(pk=command.pk, status=NetworkCommand.Status.PENDING)
    # A lease never reaches further than DELIVERY_LEASE: a later time is a backoff, safe to cut short.
    # A command inside its lease may be on the wire right now and is left alone.
    updated = pending.filter(next_attempt_at__gt=now + DELIVERY_LEASE).update(next_attempt_at=now)
    if updated:
        logger.info("network_command_retry_now command=%s line=%s id=%s", command.command, command.line_id, command.pk)
        transaction.on_commit(kick_delivery)
    failed = (
        NetworkCommand.objects.select_for_update().filter(pk=command.pk, status=NetworkCommand.Status.FAILED).first()
    )
    if failed is not None:
        Line.objects.select_for_update().filter(pk=failed.line_id).first()  # serialize with the line's writers
        same_switch = [name for name, switch in SWITCH.items() if switch == SWITCH[failed.command]]
        overridden = (
            NetworkCommand.objects.filter(line_id=failed.line_id, id__gt=failed.pk, command__in=same_switch)
            .exclude(status=NetworkCommand.Status.SUPERSEDED)
            .exists()
        )
        latest = not NetworkCommand.objects.filter(line_id=failed.line_id, id__gt=failed.pk).exists()
        if latest:
            # Nothing was written after it: in the queue again as it is, still the line's last word.
            NetworkCommand.objects.filter(pk=failed.pk).update(
                status=NetworkCommand.Status.PENDING, attempts=0, next_attempt_at=now
            )
            note = "queued again"
            transaction.on_commit(kick_delivery)
        else:
            if overridden:
                note = "overridden by a later command of the line: not sent"
            else:
                again = enqueue_command(line=failed.line, command=failed.command, reason=failed.reason, now=now)
                note = f"written again as command {again.pk}"
            NetworkCommand.objects.filter(pk=failed.pk).update(
                status=NetworkCommand.Status.SUPERSEDED, last_error=f"{note}; was: {failed.last_error}"[:500]
            )
        logger.info(
            "network_command_dead_letter_handled command=%s line=%s id=%s outcome=%s",
            failed.command,
            failed.line_id,
            failed.pk,
            note,
        )
    command.refresh_from_db()
    return command
