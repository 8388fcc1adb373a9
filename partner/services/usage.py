"""Partner usage ingestion: record a batch of usage records once, lower the lines' data, apply the
overage policy at zero, then let the renewal engine look at the lines at once.

Usage is charged to the package whose period it falls in (docs/usage.md): a record whose period
ended before the line's current package began (`Line.package_started_at`) belongs to the package
that was replaced. It is stored (`UsageRecord.charged = False`) and counted in the line's used data,
but lowers nothing of the new package, moves no notice, no overage, no block and no renewal
trigger. If it also arrived more than `USAGE_LATENESS_WINDOW` after its period ended it is *late*:
reported to the partner and logged as a warning.

The cost of a batch does not grow in queries with its size: one INSERT … ON CONFLICT DO NOTHING
RETURNING tells which records are new, one SELECT … FOR UPDATE locks the touched lines, one
UPDATE … FROM (the batch's values) writes them (and, only in a batch that has uncharged records, one
UPDATE … WHERE partner_record_id IN (…) flags them), all in one transaction, so a duplicate can never be
applied twice and two partners' retries of the same batch serialize on the unique index.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts import history, metrics, partitions
from accounts.models import Line, UsageRecord
from accounts.services import network, notices
from renewals.models import RenewalRule
from renewals.services.triggers import evaluate_triggers

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# The dedup key: UsageRecord's "usage_record_once" constraint. It includes period_start (the same in
# every retry of a record) because the table is partitioned by it (docs/usage.md, "History").
CONFLICT_TARGET = ("partner_record_id", "period_start")
OUTSIDE_DEDUP_WINDOW = "start is older than the dedup window ({days} days): a duplicate could no longer be detected"


@dataclass(frozen=True)
class UsageInput:
    """One record that passed the shape checks; `index` is its position in the request."""

    index: int
    partner_record_id: str
    iccid: str
    bytes: int
    start: datetime
    end: datetime


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)  # {"index", "id", "error"}
    # New records of a package the line no longer has: stored, not charged (docs/usage.md).
    uncharged: int = 0
    late: list[dict] = field(default_factory=list)  # {"index", "id"}: uncharged and past the lateness window
    line_ids: list[int] = field(default_factory=list)  # lines charged (their balance may have moved)
    exhausted_line_ids: list[int] = field(default_factory=list)


@dataclass
class LineChange:
    remaining: int
    used: int
    overage: int
    status: str
    notice_level: int
    data_blocked: bool

    @classmethod
    def unchanged(cls, line: "Line | LineState") -> "LineChange":
        """The line's counters as they stand: what settling nothing leaves."""
        return cls(
            remaining=line.data_remaining_bytes,
            used=line.data_used_bytes,
            overage=line.overage_bytes,
            status=line.status,
            notice_level=line.usage_notice_level,
            data_blocked=line.data_blocked,
        )


@dataclass(frozen=True)
class LineState:
    """What settling usage reads of a line (a locked row as a tuple: no model instance, whose
    construction and history snapshot cost more than the settling itself)."""

    pk: int
    iccid: str
    status: str
    data_remaining_bytes: int
    data_used_bytes: int
    overage_bytes: int
    usage_notice_level: int
    package_id: int | None
    package_allowance_bytes: int | None
    data_blocked: bool
    package_started_at: datetime | None

    @property
    def data_total_bytes(self) -> int:
        return max(self.data_remaining_bytes, 0) + self.data_used_bytes


@dataclass(frozen=True)
class RuleOverage:
    overage_policy: str
    overage_cap_mb: int | None


def settle_usage(*, line: LineState, rule: RuleOverage | None, used_bytes: int) -> LineChange:
    """The line after `used_bytes` more usage, under its renewal rule's overage policy (no rule:
    block). Remaining data never goes below zero; usage past zero goes to `overage_bytes` up to
    the rule's cap when the policy lets service continue; at zero (and at the cap) data stops."""
    available = max(line.data_remaining_bytes, 0)
    remaining = max(available - used_bytes, 0)
    beyond_zero = used_bytes - (available - remaining)
    policy = rule.overage_policy if rule is not None else RenewalRule.OveragePolicy.BLOCK
    cap = (rule.overage_cap_mb or 0) * MB if rule is not None else 0
    overage = line.overage_bytes
    if policy != RenewalRule.OveragePolicy.BLOCK:
        # The network may have let more through before our block arrived; the customer agreed to the cap only.
        overage = min(overage + beyond_zero, max(cap, overage))
    exhausted = remaining == 0 and (policy == RenewalRule.OveragePolicy.BLOCK or overage >= cap)
    status = line.status
    # The data switch is set whatever the status (a suspended or expired line stays so, and its
    # resume knows the data is gone); only the status of an active line shows it.
    data_blocked = (
        line.data_blocked or status == Line.Status.DATA_EXHAUSTED or (exhausted and status != Line.Status.TERMINATED)
    )
    if data_blocked and status == Line.Status.ACTIVE:
        status = Line.Status.DATA_EXHAUSTED
    allowance = line.package_allowance_bytes if line.package_id else line.data_total_bytes
    level = notices.usage_notice_level(remaining_bytes=remaining, allowance_bytes=allowance)
    if status == Line.Status.TERMINATED:
        level = 0  # nobody to tell: a terminated line's late usage is recorded, never mailed about
    return LineChange(
        remaining=remaining,
        used=line.data_used_bytes + used_bytes,
        overage=overage,
        status=status,
        notice_level=max(level, line.usage_notice_level),
        data_blocked=data_blocked,
    )


def ingest_usage(*, records: list[UsageInput], now: datetime | None = None) -> IngestResult:
    """Record the batch and apply each new record to its line, exactly once. Records whose ICCID
    is unknown are rejected one by one; the others go ahead."""
    now = now or timezone.now()
    result = IngestResult()
    if not records:
        return result
    line_ids = dict(Line.objects.filter(iccid__in={r.iccid for r in records}).values_list("iccid", "id"))
    # Unknown ICCIDs are rejected before duplicates are counted: a rejected record was not received,
    # so a later record of the batch with the same id is not its duplicate (it would be lost).
    unique: dict[str, UsageInput] = {}
    dedup_since = now - settings.USAGE_DEDUP_WINDOW
    for record in records:
        if record.iccid not in line_ids:
            result.rejected.append({"index": record.index, "id": record.partner_record_id, "error": "unknown iccid"})
        elif record.start < dedup_since:
            error = OUTSIDE_DEDUP_WINDOW.format(days=settings.USAGE_DEDUP_WINDOW.days)
            result.rejected.append({"index": record.index, "id": record.partner_record_id, "error": error})
        elif record.partner_record_id in unique:
            result.duplicates += 1
        else:
            unique[record.partner_record_id] = record
    # Sorted by id: concurrent batches that share records wait on the unique index in the same order (no deadlock).
    known = sorted(unique.values(), key=lambda r: r.partner_record_id)
    # Before the batch's transaction, so that making a day's partition never waits on our own locks.
    partitions.ensure_partitions_for(r.start for r in known)

    with transaction.atomic():
        inserted = _insert_new_records(known, line_ids=line_ids, now=now)
        result.accepted = len(inserted)
        result.duplicates += len(known) - len(inserted)
        new_by_line: dict[int, list[UsageInput]] = defaultdict(list)
        for record in known:
            if record.partner_record_id in inserted:
                new_by_line[line_ids[record.iccid]].append(record)
        if new_by_line:
            charged_line_ids, exhausted, new_levels, uncharged = _apply_to_lines(new_by_line, now=now)
            result.line_ids = charged_line_ids
            result.exhausted_line_ids = exhausted
            result.uncharged = len(uncharged)
            result.late = _late_records(uncharged, now=now)
            if exhausted:
                network.enqueue_commands(
                    commands=[(line_id, "block_data", "data exhausted") for line_id in exhausted], now=now
                )
            if new_levels:
                notices.owe_usage_notices(levels=new_levels, now=now)

    for outcome, amount in (
        ("accepted", result.accepted),
        ("duplicate", result.duplicates),
        ("rejected", len(result.rejected)),
    ):
        if amount:
            metrics.USAGE_RECORDS.labels(result=outcome).inc(amount)
    logger.info(
        "usage_batch_ingested accepted=%s duplicates=%s rejected=%s uncharged=%s late=%s lines=%s exhausted=%s",
        result.accepted,
        result.duplicates,
        len(result.rejected),
        result.uncharged,
        len(result.late),
        len(result.line_ids),
        result.exhausted_line_ids,
    )
    if result.line_ids:
        _evaluate_triggers(line_ids=result.line_ids, now=now)
    return result


def _insert_new_records(records: list[UsageInput], *, line_ids: dict[str, int], now: datetime) -> set[str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the ids that were not there before.
    PostgreSQL and SQLite (≥ 3.35) both speak this dialect, so development runs the same path."""
    if not records:
        return set()
    qn = connection.ops.quote_name
    table = qn(UsageRecord._meta.db_table)
    columns = ", ".join(
        qn(UsageRecord._meta.get_field(f).column)
        for f in ("partner_record_id", "line", "bytes", "period_start", "period_end", "received_at")
    )
    conflict = f"ON CONFLICT ({', '.join(map(qn, CONFLICT_TARGET))}) DO NOTHING RETURNING {qn('partner_record_id')}"
    if connection.vendor == "postgresql":
        # One array per column: six parameters instead of six per record, so the driver does not
        # parse a 6,000-placeholder statement on every batch (a fifth of a batch's time).
        sql = (
            f"INSERT INTO {table} ({columns}) "
            "SELECT * FROM unnest(%s::varchar[], %s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[]) "
            f"{conflict}"
        )
        params = [
            [r.partner_record_id for r in records],
            [line_ids[r.iccid] for r in records],
            [r.bytes for r in records],
            [r.start for r in records],
            [r.end for r in records],
            [now] * len(records),
        ]
    else:
        adapt = connection.ops.adapt_datetimefield_value
        params = []
        for r in records:
            params += [r.partner_record_id, line_ids[r.iccid], r.bytes, adapt(r.start), adapt(r.end), adapt(now)]
        sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(records))} {conflict}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


LINE_STATE_FIELDS = (
    "pk",
    "iccid",
    "status",
    "data_remaining_bytes",
    "data_used_bytes",
    "overage_bytes",
    "usage_notice_level",
    "package_id",
    "package__data_allowance_bytes",
    "data_blocked",
    "package_started_at",
)


def charged_to_current_package(*, line: LineState, record: UsageInput) -> bool:
    """Whether the record falls in the line's current package's period: it ended at or after the
    package began (a period that straddles the start is the new package's). A line whose package
    start is unknown (before migration 0010, or never given a package by apply_package) is charged
    every record, as before."""
    return line.package_started_at is None or record.end >= line.package_started_at


def _apply_to_lines(
    new_by_line: dict[int, list[UsageInput]], *, now: datetime
) -> tuple[list[int], list[int], dict[int, int], list[tuple[int, UsageInput]]]:
    """Lock the lines (in id order, so batches never deadlock), settle the usage charged to each
    line's current package, write every line in one UPDATE, and flag the records that were not
    charged in one more. Returns the charged lines, the lines whose data was just blocked, the new
    notice levels and the uncharged records (with their line id)."""
    lines = [
        LineState(*row)
        for row in Line.objects.filter(pk__in=new_by_line)
        .order_by("pk")
        .select_for_update(of=("self",))
        .values_list(*LINE_STATE_FIELDS)
    ]
    rules = {
        line_id: RuleOverage(policy, cap)
        for line_id, policy, cap in RenewalRule.objects.filter(line_id__in=new_by_line).values_list(
            "line_id", "overage_policy", "overage_cap_mb"
        )
    }
    changes: dict[int, LineChange] = {}
    charged_lines: list[int] = []
    exhausted: list[int] = []
    new_levels: dict[int, int] = {}
    uncharged: list[tuple[int, UsageInput]] = []
    for line in lines:
        charged_bytes = uncharged_bytes = 0
        any_charged = False
        for record in new_by_line[line.pk]:
            if charged_to_current_package(line=line, record=record):
                charged_bytes += record.bytes
                any_charged = True
            else:
                uncharged_bytes += record.bytes
                uncharged.append((line.pk, record))
        if any_charged:
            change = settle_usage(line=line, rule=rules.get(line.pk), used_bytes=charged_bytes)
            charged_lines.append(line.pk)
        else:
            # Only an earlier package's usage: nothing of the current package moves, not even a
            # notice level or a block that its balance alone would imply (docs/usage.md).
            change = LineChange.unchanged(line)
        # The line's used data is its history: it counts the uncharged usage too.
        change.used += uncharged_bytes
        changes[line.pk] = change
        if change.data_blocked and not (line.data_blocked or line.status == Line.Status.DATA_EXHAUSTED):
            exhausted.append(line.pk)
            logger.info("line_data_exhausted line=%s overage=%s", line.pk, change.overage)
        if change.notice_level > line.usage_notice_level:
            new_levels[line.pk] = change.notice_level
    _write_lines(changes, now=now)
    if uncharged:
        UsageRecord.objects.filter(
            partner_record_id__in=[record.partner_record_id for _line, record in uncharged]
        ).update(charged=False)
    # The bulk UPDATE bypasses the history signals: record the line states it changed.
    history.record_changes(
        [
            (Line(pk=line.pk, iccid=line.iccid), {"status": line.status}, {"status": changes[line.pk].status})
            for line in lines
            if changes[line.pk].status != line.status
        ],
        action="usage_batch",
        reason="data used up",
        now=now,
    )
    return charged_lines, exhausted, new_levels, uncharged


def _late_records(uncharged: list[tuple[int, UsageInput]], *, now: datetime) -> list[dict]:
    """The uncharged records that arrived more than USAGE_LATENESS_WINDOW after their period ended:
    past any partner retry, so worth the partner's (and the operator's) attention. Uncharged records
    inside the window are the normal tail of the previous package and are only counted."""
    window = settings.USAGE_LATENESS_WINDOW
    late = []
    for line_id, record in uncharged:
        if now - record.end > window:
            late.append({"index": record.index, "id": record.partner_record_id})
            logger.warning(
                "usage_record_late line=%s id=%r bytes=%s period_end=%s received=%s window=%s",
                line_id,
                record.partner_record_id,
                record.bytes,
                record.end.isoformat(),
                now.isoformat(),
                window,
            )
    return sorted(late, key=lambda entry: entry["index"])


def _write_lines(changes: dict[int, LineChange], *, now: datetime) -> None:
    """One UPDATE … FROM the batch's values (unnest'ed arrays on PostgreSQL, a VALUES CTE, which
    SQLite ≥ 3.33 also runs, elsewhere)."""
    qn = connection.ops.quote_name
    table = qn(Line._meta.db_table)
    set_columns = (
        f"UPDATE {table} SET {qn('data_remaining_bytes')} = v.remaining, {qn('data_used_bytes')} = v.used, "
        f"{qn('overage_bytes')} = v.overage, {qn('status')} = v.status, "
        f"{qn('usage_notice_level')} = v.notice_level, {qn('data_blocked')} = v.data_blocked, {qn('updated_at')} = %s "
    )
    if connection.vendor == "postgresql":
        sql = (
            f"{set_columns} FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::varchar[], %s::integer[], %s::boolean[]) "
            f"AS v (id, remaining, used, overage, status, notice_level, data_blocked) WHERE {table}.{qn('id')} = v.id"
        )
        params: list = [
            now,
            list(changes),
            [c.remaining for c in changes.values()],
            [c.used for c in changes.values()],
            [c.overage for c in changes.values()],
            [c.status for c in changes.values()],
            [c.notice_level for c in changes.values()],
            [c.data_blocked for c in changes.values()],
        ]
    else:
        row = "(CAST(%s AS bigint), CAST(%s AS bigint), CAST(%s AS bigint), CAST(%s AS bigint), %s, CAST(%s AS integer), CAST(%s AS boolean))"
        params = []
        for line_id, c in changes.items():
            params += [line_id, c.remaining, c.used, c.overage, c.status, c.notice_level, c.data_blocked]
        params.append(connection.ops.adapt_datetimefield_value(now))
        sql = (
            f"WITH v (id, remaining, used, overage, status, notice_level, data_blocked) AS (VALUES {', '.join([row] * len(changes))}) "
            f"{set_columns} FROM v WHERE {table}.{qn('id')} = v.id"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _evaluate_triggers(*, line_ids: list[int], now: datetime) -> None:
    """A line that crossed its threshold gets its renewal now, not at the next beat. The usage is
    already committed; if this fails the beat sweep evaluates the same lines, so it is logged."""
    try:
        evaluate_triggers(line_ids=line_ids, now=now)
    except Exception:
        logger.exception("renewal_triggers_failed lines=%s", line_ids)
