"""A line's life as one state machine (docs/line-states.md): the status a line has after each
transition, and the network commands that transition implies, written to the outbox in the same
transaction as the state change so that the network's state follows the database's.

The partner keeps two switches per line: service (`suspend` / `resume`) and data (`block_data` /
`unblock_data`). Our database holds both: the service is off while the line is suspended,
expired or terminated; the data is off while `data_blocked` is set (usage crossed zero under the
overage policy), whatever the status. A transition compares the two switches before and after and
writes the commands for what changed (`commands_between`).

Precedence, strongest first: operator suspension > termination > expiry > payment / data state.
A payment never lifts an operator's suspension; nothing moves a terminated line.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from .. import history, metrics
from ..history import acting
from ..models import Line
from .network import enqueue_commands

logger = logging.getLogger(__name__)

SUSPENDABLE = (Line.Status.INACTIVE, Line.Status.ACTIVE, Line.Status.DATA_EXHAUSTED, Line.Status.EXPIRED)
# The service is off at the network in these states (terminated lines are never sent anything).
SERVICE_OFF = (Line.Status.SUSPENDED, Line.Status.EXPIRED, Line.Status.TERMINATED)
# Lines the renewal engine suspends when a cycle stays unpaid past its grace (an operator's
# suspension and a terminated line outrank it; an inactive line never started service).
PAYMENT_SUSPENDABLE = (Line.Status.ACTIVE, Line.Status.DATA_EXHAUSTED, Line.Status.EXPIRED)
# The history's name for it: a payment lifts this suspension, never an operator's.
PAYMENT_SUSPENSION = "suspended_for_payment"
# Lines whose end of validity the expiry sweep enforces. A suspended line stays suspended (its
# service is off already) and comes back expired when resumed; an inactive line was never started.
EXPIRABLE = (Line.Status.ACTIVE, Line.Status.DATA_EXHAUSTED)


@dataclass(frozen=True)
class NetworkState:
    service_on: bool
    data_blocked: bool


def is_data_blocked(line) -> bool:
    """The data switch. A line saved as out of data before `data_blocked` existed counts too."""
    return bool(line.data_blocked) or line.status == Line.Status.DATA_EXHAUSTED


def network_state(line) -> NetworkState:
    return NetworkState(service_on=line.status not in SERVICE_OFF, data_blocked=is_data_blocked(line))


def commands_between(before: NetworkState, after: NetworkState) -> list[str]:
    """What the partner must be told to go from `before` to `after`: the service switch first,
    then the data switch. After a `resume` a blocked line's `block_data` is sent again, because a
    partner may take `resume` as restoring the whole line (docs/network-outbox.md)."""
    commands = []
    if before.service_on and not after.service_on:
        commands.append("suspend")
    if after.service_on and not before.service_on:
        commands.append("resume")
    if after.data_blocked != before.data_blocked:
        commands.append("block_data" if after.data_blocked else "unblock_data")
    elif after.data_blocked and "resume" in commands:
        commands.append("block_data")
    return commands


def begin_transition(line: Line) -> NetworkState:
    """The switches before a transition; the data switch is kept on the row from now on, so a
    status change cannot lose it."""
    before = network_state(line)
    line.data_blocked = before.data_blocked
    return before


def write_commands(*, line: Line, before: NetworkState, reason: str, now: datetime) -> list[str]:
    """Outbox rows for the change of `line` (already saved, still locked) since `before`."""
    commands = commands_between(before, network_state(line))
    if commands:
        enqueue_commands(commands=[(line.pk, command, reason) for command in commands], now=now)
    return commands


def status_after_resume(line: Line, now: datetime) -> str:
    """A suspension lifted: the line is what its validity, data and activation say (precedence:
    expiry > data > not yet activated > active)."""
    if line.expires_at is not None and line.expires_at <= now:
        return Line.Status.EXPIRED
    if is_data_blocked(line):
        return Line.Status.DATA_EXHAUSTED
    if line.suspended_from == Line.Status.INACTIVE and line.activated_at is None:
        return Line.Status.INACTIVE
    return Line.Status.ACTIVE


def suspend_line(*, line_id: int, reason: str, actor, now: datetime) -> bool:
    """The operator's suspension, which no payment lifts. A line suspended for non-payment becomes
    the operator's (nothing to tell the network: it is off already). False (nothing written) when
    the line is terminated or already suspended by an operator."""
    with transaction.atomic():
        line = Line.objects.select_for_update().get(pk=line_id)
        if line.status == Line.Status.SUSPENDED and not line.suspended_by_operator:
            line.suspended_by_operator = True
            line.save(update_fields=["suspended_by_operator", "updated_at"])
            history.record_change(
                obj=line,
                action="suspended",
                actor=actor,
                reason=reason,
                before={"suspended_by_operator": False},
                after={"suspended_by_operator": True},
                now=now,
            )
            logger.info(
                "line_suspended line=%s status=suspended (for non-payment) -> suspended by operator operator=%s",
                line.pk,
                getattr(actor, "pk", None),
            )
            return True
        if line.status not in SUSPENDABLE:
            return False
        previous, before = line.status, begin_transition(line)
        line.suspended_from = line.status
        line.status = Line.Status.SUSPENDED
        line.suspended_by_operator = True
        with acting(actor, action="suspended", reason=reason):
            line.save(update_fields=["status", "suspended_from", "suspended_by_operator", "data_blocked", "updated_at"])
        write_commands(line=line, before=before, reason=reason, now=now)
    logger.info(
        "line_suspended line=%s status=%s->suspended operator=%s", line.pk, previous, getattr(actor, "pk", None)
    )
    metrics.count_on_commit(metrics.LINE_SUSPENSIONS, by="operator")
    return True


def suspend_line_for_payment(*, line_id: int, reason: str, now: datetime) -> str | None:
    """The renewal engine's suspension of a line whose cycle stayed unpaid (a payment lifts it:
    lines.apply_package). Returns the status it had, or None (nothing written) when the line is not
    in PAYMENT_SUSPENDABLE. Called inside the engine's transaction; the network is told `suspend`
    only if the service was on (an expired line's is off already)."""
    with transaction.atomic():
        line = Line.objects.select_for_update().get(pk=line_id)
        if line.status not in PAYMENT_SUSPENDABLE:
            return None
        previous, before = line.status, begin_transition(line)
        line.status = Line.Status.SUSPENDED
        with acting(None, action=PAYMENT_SUSPENSION, reason=reason):
            line.save(update_fields=["status", "data_blocked", "updated_at"])
        write_commands(line=line, before=before, reason=reason, now=now)
    logger.info("line_suspended line=%s status=%s->suspended for non-payment reason=%s", line.pk, previous, reason)
    metrics.count_on_commit(metrics.LINE_SUSPENSIONS, by="non_payment")
    return previous


def resume_line(*, line_id: int, reason: str, actor, now: datetime) -> bool:
    """Only a suspended line resumes (whoever suspended it); it comes back as its validity, data
    and activation say, and the network is told what that implies: `resume` (and `block_data` if
    its data is used up), or nothing if its validity ended meanwhile."""
    with transaction.atomic():
        line = Line.objects.select_for_update().get(pk=line_id)
        if line.status != Line.Status.SUSPENDED:
            return False
        before = begin_transition(line)
        line.status = status_after_resume(line, now)
        line.suspended_by_operator = False
        line.suspended_from = ""
        with acting(actor, action="resumed", reason=reason):
            line.save(update_fields=["status", "suspended_from", "suspended_by_operator", "data_blocked", "updated_at"])
        write_commands(line=line, before=before, reason=reason, now=now)
    logger.info(
        "line_resumed line=%s status=suspended->%s operator=%s", line.pk, line.status, getattr(actor, "pk", None)
    )
    metrics.count_on_commit(metrics.LINE_RESTORATIONS, by="operator")
    return True


def terminate_line(*, line_id: int, reason: str, actor, now: datetime) -> bool:
    """The end of a line: from any state, for good. The network is told `suspend` if the service
    was on; nothing moves a terminated line afterwards (no payment, no resume). The renewal engine
    follows the save (renewals.signals): open renewals are cancelled and a waiting 3-D Secure
    payment withdrawn. False (nothing written) when the line is terminated already."""
    with transaction.atomic():
        line = Line.objects.select_for_update().get(pk=line_id)
        if line.status == Line.Status.TERMINATED:
            return False
        previous, before = line.status, begin_transition(line)
        line.status = Line.Status.TERMINATED
        line.suspended_by_operator = False
        line.suspended_from = ""
        with acting(actor, action="terminated", reason=reason):
            line.save(update_fields=["status", "suspended_from", "suspended_by_operator", "data_blocked", "updated_at"])
        write_commands(line=line, before=before, reason=reason, now=now)
    logger.info(
        "line_terminated line=%s status=%s->terminated operator=%s", line.pk, previous, getattr(actor, "pk", None)
    )
    return True


def expire_lines(*, now: datetime, limit: int = 500) -> list[int]:
    """The expiry transition, for the beat sweep: lines whose validity ended go to `expired` and
    the network is told `suspend` (reason "validity ended"). Claimed under SKIP LOCKED through
    the (status, expires_at) index, at most `limit` per pass, so two beats never expire a line
    twice and a backlog drains over a few ticks."""
    with transaction.atomic():
        lines = list(
            Line.objects.filter(status__in=EXPIRABLE, expires_at__lte=now)
            .order_by("expires_at", "id")
            .select_for_update(skip_locked=True)[:limit]
        )
        commands = []
        for line in lines:
            before = begin_transition(line)
            previous = line.status
            line.status = Line.Status.EXPIRED
            with acting(None, action="expired", reason="validity ended"):
                line.save(update_fields=["status", "data_blocked", "updated_at"])
            commands += [
                (line.pk, command, "validity ended") for command in commands_between(before, network_state(line))
            ]
            logger.info(
                "line_expired line=%s status=%s->expired expires_at=%s", line.pk, previous, line.expires_at.isoformat()
            )
        if commands:
            enqueue_commands(commands=commands, now=now)
    return [line.pk for line in lines]
