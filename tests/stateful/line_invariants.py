"""The invariants of the line model (test_line_model.py): a line's life in the database against
what the partner stand-in *received* over the wire (partner_standin.py). Each check takes a
`World` (what one example owns and what the model remembers) and the stand-in, and raises
AssertionError with a sentence an engineer can act on; each raises from its own line, so that
hypothesis tells distinct bugs apart.

"Drained" (docs/network-outbox.md, "What the model checks"): a line with no pending command. For
a drained line without a dead letter, the partner's state (its 2xx-answered commands replayed in
received order, dropping a sequence not above the last applied) equals the two switches our
database holds. Between drains only the order is checked: per line, sequences received never go
down, and the ones the partner applied strictly increase (never a stale command after a newer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

from accounts.models import Line, NetworkCommand
from accounts.services import line_status
from console import operations
from partner.services.outbox import RETRYABLE_CLIENT_ERRORS
from renewals.models import Renewal

from .partner_standin import COMMANDS_PATH, PartnerLine, PartnerStandIn


@dataclass
class World:
    line_ids: list[int]
    iccids: dict[int, str]
    initial_used: dict[int, int]
    usage_bytes: dict[int, int] = field(default_factory=dict)
    operator_suspended: set[int] = field(default_factory=set)
    terminated: set[int] = field(default_factory=set)
    # The highest command id of the line when it was terminated, and its notice level then.
    last_command_at_termination: dict[int, int] = field(default_factory=dict)
    notice_level_at_termination: dict[int, int] = field(default_factory=dict)
    # When the expiry sweep last ran.
    last_expiry_sweep_at: datetime | None = None


def permanent_refusal(code: int) -> bool:
    return 400 <= code < 500 and code not in RETRYABLE_CLIENT_ERRORS


def _commands(world: World):
    return NetworkCommand.objects.filter(line_id__in=world.line_ids)


# --- 1. order at the partner -------------------------------------------------------------------------


def check_received_in_order(world: World, partner: PartnerStandIn) -> None:
    received = partner.all_received()
    followed = [r for r in received if r.path != COMMANDS_PATH]
    assert not followed, f"a redirect was followed: the partner received {followed} at another path"
    for line_id in world.line_ids:
        per_line = [r for r in received if r.iccid == world.iccids[line_id]]
        sent = [r.sequence for r in per_line]
        assert sent == sorted(sent), (
            f"line {line_id}: sequences received out of order {[(r.sequence, r.command, r.code) for r in per_line]}"
        )
        applied = [r.sequence for r in per_line if r.applied]
        assert all(a < b for a, b in pairwise(applied)), (
            f"line {line_id}: the partner was handed a command not newer than one it had applied (a stale or repeated "
            f"send): {[(r.id, r.sequence, r.command, r.code) for r in per_line]}"
        )


# --- 2. what the partner took is what the outbox recorded delivered ----------------------------------


def check_partner_matches_outbox(world: World, partner: PartnerStandIn) -> None:
    iccids = set(world.iccids.values())
    applied = sorted(r.id for r in partner.all_received() if r.iccid in iccids and r.applied)
    delivered = sorted(_commands(world).filter(status=NetworkCommand.Status.DELIVERED).values_list("pk", flat=True))
    assert applied == delivered, f"the partner took commands {applied}, the outbox recorded {delivered} as delivered"
    not_2xx = list(
        _commands(world)
        .filter(status=NetworkCommand.Status.DELIVERED)
        .exclude(last_response_code__gte=200, last_response_code__lt=300)
        .values_list("pk", "last_response_code")
    )
    assert not not_2xx, f"commands recorded delivered on an answer that was not a 2xx: {not_2xx}"


# --- 3. refusals are dead-lettered and shown -----------------------------------------------------------


def check_refusals_dead_lettered(world: World, partner: PartnerStandIn) -> None:
    last_answer: dict[int, int] = {}
    for r in partner.all_received():
        last_answer[r.id] = r.code
    rows = {c.pk: c for c in _commands(world)}
    for command_id, code in last_answer.items():
        row = rows.get(command_id)
        if row is None or not permanent_refusal(code):
            continue
        # Retried only after an operator put it back (attempts start again at 0 then).
        assert row.status in (NetworkCommand.Status.FAILED, NetworkCommand.Status.SUPERSEDED) or (
            row.status == NetworkCommand.Status.PENDING and row.attempts == 0
        ), (
            f"command {command_id} ({row.command}) was refused with {code} and is {row.status} after {row.attempts} attempts"
        )
    failed = [pk for pk, row in rows.items() if row.status == NetworkCommand.Status.FAILED]
    if failed:
        shown = {c.pk for c in operations.dead_lettered_commands(limit=1000)}
        assert set(failed) <= shown, f"dead letters {sorted(set(failed) - shown)} are not on the operations page"
        assert operations.dead_letter_count() >= len(failed), (
            "the health check counts fewer dead letters than there are"
        )


# --- 4. once drained, the partner holds what the database holds --------------------------------------


def database_switches(line: Line) -> PartnerLine:
    state = line_status.network_state(line)
    return PartnerLine(service_on=state.service_on, data_blocked=state.data_blocked)


def check_network_follows_line(world: World, partner: PartnerStandIn) -> int:
    """Returns how many lines were compared (drained, no dead letter)."""
    compared = 0
    for line in Line.objects.filter(pk__in=world.line_ids).order_by("pk"):
        rows = _commands(world).filter(line_id=line.pk)
        if rows.filter(status=NetworkCommand.Status.PENDING).exists():
            continue  # not drained: only the order is checked (1.)
        if rows.filter(status=NetworkCommand.Status.FAILED).exists():
            continue  # out of step on purpose, and shown (3.) until an operator retries
        held = partner.state_of(world.iccids[line.pk])
        want = database_switches(line)
        compared += 1
        assert held == want, (
            f"line {line.pk} is {line.status} (data_blocked={line.data_blocked}) in the database, so the partner should hold "
            f"{want}; replaying what it received gives {held}: "
            f"{[(r.sequence, r.command, r.code) for r in partner.received_for(world.iccids[line.pk])]}; outbox "
            f"{list(rows.order_by('id').values_list('sequence', 'command', 'status'))}"
        )
    return compared


# --- 4b. every command says something ------------------------------------------------------------------


def check_no_needless_commands(world: World) -> None:
    """Replaying the outbox (a dead letter written again left out: its copy counts), each command
    changes the switch it sets; the one exception is the `block_data` re-sent after a `resume` (a
    partner may take `resume` as restoring the data too: docs/network-outbox.md)."""
    for line_id in world.line_ids:
        service_on, data_blocked, previous = True, False, None
        rows = list(
            _commands(world)
            .filter(line_id=line_id)
            .exclude(status=NetworkCommand.Status.SUPERSEDED, last_error__startswith="written again")
            .order_by("sequence")
            .values_list("sequence", "command", "reason")
        )
        for sequence, command, reason in rows:
            if command in ("suspend", "resume"):
                assert service_on != (command == "resume"), (
                    f"line {line_id}: command {sequence} `{command}` ({reason}) repeats what the partner was already told: {rows}"
                )
                service_on = command == "resume"
            else:
                repeat_after_resume = command == "block_data" and previous == "resume"
                assert data_blocked != (command == "block_data") or repeat_after_resume, (
                    f"line {line_id}: command {sequence} `{command}` ({reason}) repeats what the partner was already told: {rows}"
                )
                data_blocked = command == "block_data"
            previous = command


# --- 5. precedence ------------------------------------------------------------------------------------------


def check_precedence(world: World, now: datetime) -> None:
    """Operator suspension > termination > expiry > payment / data state."""
    for line in Line.objects.filter(pk__in=world.line_ids).order_by("pk"):
        if line.pk in world.terminated:
            assert line.status == Line.Status.TERMINATED, f"line {line.pk} was terminated; it is {line.status} now"
            continue
        if line.pk in world.operator_suspended:
            assert line.status == Line.Status.SUSPENDED and line.suspended_by_operator, (
                f"the operator suspended line {line.pk}; it is {line.status} (by operator: {line.suspended_by_operator})"
            )
            continue
        if line.status == Line.Status.SUSPENDED:
            assert Renewal.objects.filter(
                line_id=line.pk, status=Renewal.Status.FAILED, line_suspended_at__isnull=False
            ).exists(), f"line {line.pk} is suspended, not by the operator, and no failed renewal suspended it"
        if line.status == Line.Status.EXPIRED:
            assert line.expires_at is not None and line.expires_at <= now, (
                f"line {line.pk} is expired until {line.expires_at}"
            )
        sweep = world.last_expiry_sweep_at
        if (
            sweep is not None
            and line.expires_at is not None
            and line.expires_at <= sweep
            and line.status != Line.Status.SUSPENDED
        ):
            assert line.status == Line.Status.EXPIRED, (
                f"line {line.pk}'s validity ended at {line.expires_at}, the expiry sweep ran at {sweep}, it is {line.status}"
            )
        if line.status == Line.Status.ACTIVE:
            assert not line.data_blocked, f"line {line.pk} is active with its data blocked"
        if line.status == Line.Status.DATA_EXHAUSTED:
            assert line.data_blocked, f"line {line.pk} is out of data without its data switch off"
        if line.data_blocked:
            assert line.data_remaining_bytes <= 0, (
                f"line {line.pk} has its data blocked with {line.data_remaining_bytes} bytes left"
            )


# --- 6. termination ----------------------------------------------------------------------------------------


def check_termination(world: World) -> None:
    for line_id in world.terminated:
        after = list(
            _commands(world)
            .filter(
                line_id=line_id,
                pk__gt=world.last_command_at_termination[line_id],
                command=NetworkCommand.Command.RESUME,
            )
            .values_list("pk", "reason")
        )
        assert not after, f"line {line_id} was terminated, and a resume was written for it since: {after}"
        line = Line.objects.get(pk=line_id)
        assert line.usage_notice_level <= world.notice_level_at_termination[line_id], (
            f"terminated line {line_id} moved to usage notice level {line.usage_notice_level} "
            f"(was {world.notice_level_at_termination[line_id]}): its owner would be mailed"
        )


# --- 7. bytes ---------------------------------------------------------------------------------------------


def check_bytes(world: World) -> None:
    for line in Line.objects.filter(pk__in=world.line_ids):
        want = world.initial_used[line.pk] + world.usage_bytes.get(line.pk, 0)
        assert line.data_used_bytes == want, (
            f"line {line.pk} counts {line.data_used_bytes} bytes used, the partner reported {want}"
        )
        assert line.data_remaining_bytes >= 0, f"line {line.pk} has {line.data_remaining_bytes} bytes left"
