"""Partner usage ingestion: record a batch of usage records once, lower the lines' data, apply the
overage policy at zero, then let the renewal engine look at the lines at once.

Usage is charged to the package whose period it falls in (docs/usage.md): a record whose period
ended before the line's current package began (`Line.package_started_at`) belongs to the package
that was replaced. It is stored (`UsageRecord.charged = False`) and counted in the line's used data,
but lowers nothing of the new package, moves no notice, no overage, no block and no renewal
trigger. If it also arrived more than `USAGE_LATENESS_WINDOW` after its period ended it is *late*:
reported to the partner and logged as a warning.

The cost of a batch does not grow in queries with its size, and its records never become Python
objects one by one (docs/usage.md, "The ingest path"): the batch travels as one array per column
(`UsageBatch`). One SELECT … FOR UPDATE resolves the ICCIDs and locks their lines (in id order, so
batches never deadlock, and before any record is inserted, so the foreign key's share locks never
meet another batch's update); one statement inserts the new records (INSERT … SELECT FROM unnest …
ON CONFLICT DO NOTHING RETURNING, each flagged charged or not against its locked line), adds them
to the hourly roll-up (`UsageHour`: only what was inserted, so a duplicate adds nothing) and sums
them per line; one UPDATE … FROM unnest writes the lines. All in one transaction, so a duplicate
can never be applied twice and two partners' retries of the same batch serialize on the lines.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts import history, metrics, partitions
from accounts.models import Line, UsageHour, UsageRecord
from accounts.services import network, notices
from renewals.models import RenewalRule
from renewals.services.triggers import evaluate_triggers

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# What makes a usage record a duplicate: UsageRecord's "usage_record_once" constraint, the unique
# index the INSERT's ON CONFLICT names. It includes period_start (the same in every retry of a
# record) because the table is partitioned by it (docs/usage.md, "History").
RECORD_CONFLICT_TARGET = ("partner_record_id", "period_start")
OUTSIDE_DEDUP_WINDOW = "start is older than the dedup window ({days} days): a duplicate could no longer be detected"
# Arrays travel to PostgreSQL as one string each, split by string_to_array: the driver's client-side
# binding dumps a Python list element by element, which was a quarter of a batch's Python time.
# The separator is not printable, so partner.api never lets it into a record id; other text is checked.
SEPARATOR = "\x1f"


def _packed(values, cast: str) -> tuple[str, list]:
    """`string_to_array(%s, %s)::<cast>` and its parameters: `values` (ints, booleans, datetimes
    or text) joined into one string. Text holding the separator travels as a list instead."""
    if cast == "boolean[]":
        text = SEPARATOR.join("t" if value else "f" for value in values)
    elif cast == "timestamptz[]":
        iso = {value: value.isoformat() for value in set(values)}  # a batch repeats its periods
        text = SEPARATOR.join(map(iso.__getitem__, values))
    elif cast in ("varchar[]", "text[]"):
        if any(SEPARATOR in value for value in values):
            return f"%s::{cast}", [list(values)]
        text = SEPARATOR.join(values)
    else:
        text = SEPARATOR.join(map(str, values))
    return f"string_to_array(%s, %s)::{cast}", [text, SEPARATOR]


def _unnest(*columns: tuple[list, str]) -> tuple[str, list]:
    """`unnest(<array>, …)` of the given (values, cast) columns and its parameters."""
    parts, params = [], []
    for values, cast in columns:
        sql, values_params = _packed(values, cast)
        parts.append(sql)
        params += values_params
    return f"unnest({', '.join(parts)})", params


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
class UsageBatch:
    """A batch of checked records as one list per column (partner.api.parse_batch builds it
    without a Python object per record); `indexes` are the positions in the request."""

    indexes: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    iccids: list[str] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)
    ends: list[datetime] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of(cls, records: "list[UsageInput] | UsageBatch") -> "UsageBatch":
        if isinstance(records, UsageBatch):
            return records
        return cls(
            indexes=[r.index for r in records],
            ids=[r.partner_record_id for r in records],
            iccids=[r.iccid for r in records],
            bytes=[r.bytes for r in records],
            starts=[r.start for r in records],
            ends=[r.end for r in records],
        )

    def keep(self, positions: list[int]) -> "UsageBatch":
        return UsageBatch(
            indexes=[self.indexes[k] for k in positions],
            ids=[self.ids[k] for k in positions],
            iccids=[self.iccids[k] for k in positions],
            bytes=[self.bytes[k] for k in positions],
            starts=[self.starts[k] for k in positions],
            ends=[self.ends[k] for k in positions],
        )

    def record(self, k: int) -> UsageInput:
        return UsageInput(self.indexes[k], self.ids[k], self.iccids[k], self.bytes[k], self.starts[k], self.ends[k])


@dataclass(frozen=True)
class LineUsage:
    """What a batch's new records add to one line: charged to its current package, or not."""

    charged_bytes: int
    charged_records: int
    uncharged_bytes: int
    # The uncharged records as (partner_record_id, period_end): rare, for the late report.
    uncharged: list[tuple[str, datetime]]


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


def _reject(
    batch: UsageBatch, refused: list[bool], *, error: str, result: IngestResult
) -> tuple[UsageBatch, list[int]]:
    """The records flagged in `refused` go to the result's rejections with `error`; returns the
    rest of the batch and their positions in it."""
    kept = []
    for k, bad in enumerate(refused):
        if bad:
            result.rejected.append({"index": batch.indexes[k], "id": batch.ids[k], "error": error})
        else:
            kept.append(k)
    return batch.keep(kept), kept


def ingest_usage(*, records: "list[UsageInput] | UsageBatch", now: datetime | None = None) -> IngestResult:
    """Record the batch and apply each new record to its line, exactly once. Records whose ICCID
    is unknown or that start before the dedup window are rejected one by one; the others go ahead."""
    now = now or timezone.now()
    result = IngestResult()
    batch = UsageBatch.of(records)
    # A record older than the dedup window is refused: its day's partition may be gone already, so
    # a retry of it could no longer be told from a new record (docs/usage.md, "History").
    dedup_since = now - settings.USAGE_DEDUP_WINDOW
    too_old = [start < dedup_since for start in batch.starts]
    if any(too_old):
        error = OUTSIDE_DEDUP_WINDOW.format(days=settings.USAGE_DEDUP_WINDOW.days)
        batch, _kept = _reject(batch, too_old, error=error, result=result)
    if not len(batch):
        return result
    # Before the batch's transaction, so that making a day's partition never waits on our own locks.
    partitions.ensure_partitions_for(batch.starts)

    with transaction.atomic():
        lines, rules = _lock_lines(set(batch.iccids))
        line_of = [lines.get(iccid) for iccid in batch.iccids]
        # Unknown ICCIDs are rejected before duplicates are counted: a rejected record was not received,
        # so a later record of the batch with the same id is not its duplicate (it would be lost).
        if None in line_of:
            batch, kept = _reject(batch, [line is None for line in line_of], error="unknown iccid", result=result)
            line_of = [line_of[k] for k in kept]
            result.rejected.sort(key=lambda rejection: rejection["index"])
        line_ids = [line.pk for line in line_of]  # type: ignore[union-attr]
        usage_by_line = _insert_new_records(batch, line_ids=line_ids, lines=lines, now=now)
        result.accepted = sum(u.charged_records + len(u.uncharged) for u in usage_by_line.values())
        result.duplicates = len(batch) - result.accepted
        if usage_by_line:
            states = {line.pk: line for line in lines.values() if line.pk in usage_by_line}
            charged_line_ids, exhausted, new_levels = _apply_to_lines(usage_by_line, lines=states, rules=rules, now=now)
            result.line_ids = charged_line_ids
            result.exhausted_line_ids = exhausted
            result.uncharged = sum(len(u.uncharged) for u in usage_by_line.values())
            if result.uncharged:
                result.late = _late_records(usage_by_line, batch=batch, now=now)
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


def _in_list(values: list) -> tuple[str, list]:
    """`= ANY(%s)` with one array parameter on PostgreSQL (no 1,000-placeholder statement for the
    driver to split and the planner to read); `IN (%s, …)` elsewhere."""
    if connection.vendor == "postgresql":
        return "= ANY(%s)", [values]
    return f"IN ({', '.join(['%s'] * len(values))})", list(values)


def _lock_lines(iccids: set[str]) -> tuple[dict[str, LineState], dict[int, RuleOverage]]:
    """The batch's known lines by ICCID, locked in id order (so batches never deadlock) before any
    record is inserted, with their renewal rule's overage terms: one statement."""
    qn = connection.ops.quote_name
    line_table, package_table = (
        qn(Line._meta.db_table),
        qn(Line._meta.get_field("package").related_model._meta.db_table),
    )
    rule_table = qn(RenewalRule._meta.db_table)
    condition, params = _in_list(sorted(iccids))
    lock = " FOR UPDATE OF l" if connection.features.has_select_for_update_of else ""
    sql = (
        "SELECT l.id, l.iccid, l.status, l.data_remaining_bytes, l.data_used_bytes, l.overage_bytes, "
        "l.usage_notice_level, l.package_id, p.data_allowance_bytes, l.data_blocked, l.package_started_at, "
        "r.overage_policy, r.overage_cap_mb "
        f"FROM {line_table} l LEFT JOIN {package_table} p ON p.id = l.package_id "
        f"LEFT JOIN {rule_table} r ON r.line_id = l.id "
        f"WHERE l.iccid {condition} ORDER BY l.id{lock}"
    )
    lines: dict[str, LineState] = {}
    rules: dict[int, RuleOverage] = {}
    datetime_field = Line._meta.get_field("package_started_at")
    converters = connection.ops.get_db_converters(datetime_field)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            started = row[10]
            for converter in converters:
                started = converter(started, datetime_field, connection)
            state = LineState(*row[:10], package_started_at=started)  # type: ignore[misc]
            lines[state.iccid] = state
            if row[11] is not None:
                rules[state.pk] = RuleOverage(row[11], row[12])
    return lines, rules


def _insert_new_records(
    batch: UsageBatch, *, line_ids: list[int], lines: dict[str, LineState], now: datetime
) -> dict[int, LineUsage]:
    """Insert the records that were not there before (INSERT … ON CONFLICT DO NOTHING: the first
    of a batch's repeated ids wins), each flagged charged or not against its locked line, add them
    to the hourly roll-up, and return what they add to each line."""
    if not len(batch):
        return {}
    if connection.vendor == "postgresql":
        return _insert_new_records_postgresql(batch, line_ids=line_ids, now=now)
    return _insert_new_records_portable(batch, line_ids=line_ids, lines=lines, now=now)


def _insert_new_records_postgresql(batch: UsageBatch, *, line_ids: list[int], now: datetime) -> dict[int, LineUsage]:
    """One statement: the batch as one array per column, the insert, the roll-up and the sums per
    line are PostgreSQL's set work (docs/usage.md, "The ingest path")."""
    qn = connection.ops.quote_name
    records, hours, lines = (qn(m._meta.db_table) for m in (UsageRecord, UsageHour, Line))
    unnest, unnest_params = _unnest(
        (batch.ids, "varchar[]"),
        (line_ids, "bigint[]"),
        (batch.bytes, "bigint[]"),
        (batch.starts, "timestamptz[]"),
        (batch.ends, "timestamptz[]"),
    )
    conflict = ", ".join(qn(column) for column in RECORD_CONFLICT_TARGET)
    sql = (
        f"WITH ins AS (INSERT INTO {records} (partner_record_id, line_id, bytes, period_start, period_end, received_at, charged) "
        "SELECT r.record_id, r.line_id, r.bytes, r.period_start, r.period_end, %s, "
        # charged_to_current_package, in SQL: the period ended at or after the package began.
        "(l.package_started_at IS NULL OR r.period_end >= l.package_started_at) "
        f"FROM {unnest} "
        "WITH ORDINALITY AS r (record_id, line_id, bytes, period_start, period_end, n) "
        f"JOIN {lines} l ON l.id = r.line_id "
        # By id: concurrent batches that share records wait on the unique index in the same order.
        "ORDER BY r.record_id, r.n "
        f"ON CONFLICT ({conflict}) DO NOTHING "
        "RETURNING line_id, bytes, period_start, period_end, charged, partner_record_id), "
        # Only what was inserted is rolled up: a duplicate adds nothing to its hour.
        f"rollup AS (INSERT INTO {hours} AS h (line_id, hour, bytes, records) "
        "SELECT line_id, date_trunc('hour', period_start, 'UTC'), sum(bytes), count(*) FROM ins GROUP BY 1, 2 ORDER BY 1, 2 "
        "ON CONFLICT (line_id, hour) DO UPDATE SET bytes = h.bytes + EXCLUDED.bytes, records = h.records + EXCLUDED.records) "
        "SELECT line_id, coalesce(sum(bytes) FILTER (WHERE charged), 0), count(*) FILTER (WHERE charged), "
        "coalesce(sum(bytes) FILTER (WHERE NOT charged), 0), array_agg(partner_record_id) FILTER (WHERE NOT charged), "
        "array_agg(bytes) FILTER (WHERE NOT charged), array_agg(period_end) FILTER (WHERE NOT charged) "
        "FROM ins GROUP BY line_id"
    )
    params = [now, *unnest_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {
            line_id: LineUsage(
                charged_bytes=int(charged_bytes),
                charged_records=charged_records,
                uncharged_bytes=int(uncharged_bytes),
                uncharged=list(zip(ids, sizes, ends, strict=True)) if ids else [],
            )
            for line_id, charged_bytes, charged_records, uncharged_bytes, ids, sizes, ends in cursor.fetchall()
        }


def _insert_new_records_portable(
    batch: UsageBatch, *, line_ids: list[int], lines: dict[str, LineState], now: datetime
) -> dict[int, LineUsage]:
    """The same in Python and portable SQL (SQLite ≥ 3.35 speaks ON CONFLICT … RETURNING), for
    development: the batch's records one by one."""
    by_pk = {line.pk: line for line in lines.values()}
    first: dict[str, int] = {}
    for k, record_id in enumerate(batch.ids):
        first.setdefault(record_id, k)
    order = sorted(first.values(), key=lambda k: batch.ids[k])
    if not order:
        return {}
    adapt = connection.ops.adapt_datetimefield_value
    qn = connection.ops.quote_name
    params: list = []
    charged_of: dict[str, bool] = {}
    for k in order:
        record = batch.record(k)
        charged = charged_to_current_package(line=by_pk[line_ids[k]], record=record)
        charged_of[record.partner_record_id] = charged
        params += [
            record.partner_record_id,
            line_ids[k],
            record.bytes,
            adapt(record.start),
            adapt(record.end),
            adapt(now),
            charged,
        ]
    conflict = ", ".join(qn(column) for column in RECORD_CONFLICT_TARGET)
    sql = (
        f"INSERT INTO {qn(UsageRecord._meta.db_table)} (partner_record_id, line_id, bytes, period_start, period_end, received_at, charged) "
        f"VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s)'] * len(order))} ON CONFLICT ({conflict}) DO NOTHING RETURNING partner_record_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = {row[0] for row in cursor.fetchall()}
    usage: dict[int, dict] = {}
    hours: dict[tuple[int, datetime], list[int]] = defaultdict(lambda: [0, 0])
    for k in order:
        if batch.ids[k] not in inserted:
            continue
        entry = usage.setdefault(
            line_ids[k], {"charged_bytes": 0, "charged_records": 0, "uncharged_bytes": 0, "uncharged": []}
        )
        if charged_of[batch.ids[k]]:
            entry["charged_bytes"] += batch.bytes[k]
            entry["charged_records"] += 1
        else:
            entry["uncharged_bytes"] += batch.bytes[k]
            entry["uncharged"].append((batch.ids[k], batch.bytes[k], batch.ends[k]))
        hour = batch.starts[k].astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        hours[(line_ids[k], hour)][0] += batch.bytes[k]
        hours[(line_ids[k], hour)][1] += 1
    if hours:
        table = qn(UsageHour._meta.db_table)
        rows = sorted(hours.items())
        params = []
        for (line_id, hour), (size, count) in rows:
            params += [line_id, adapt(hour), size, count]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (line_id, hour, bytes, records) VALUES {', '.join(['(%s, %s, %s, %s)'] * len(rows))} "
                f"ON CONFLICT (line_id, hour) DO UPDATE SET bytes = {table}.bytes + excluded.bytes, records = {table}.records + excluded.records",
                params,
            )
    return {line_id: LineUsage(**entry) for line_id, entry in usage.items()}


def charged_to_current_package(*, line: LineState, record: UsageInput) -> bool:
    """Whether the record falls in the line's current package's period: it ended at or after the
    package began (a period that straddles the start is the new package's). A line whose package
    start is unknown (before migration 0010, or never given a package by apply_package) is charged
    every record, as before. (The PostgreSQL path says the same in SQL: _insert_new_records_postgresql.)"""
    return line.package_started_at is None or record.end >= line.package_started_at


def _apply_to_lines(
    usage_by_line: dict[int, LineUsage], *, lines: dict[int, LineState], rules: dict[int, RuleOverage], now: datetime
) -> tuple[list[int], list[int], dict[int, int]]:
    """Settle the usage charged to each (locked) line's current package and write every line in
    one UPDATE. Returns the charged lines, the lines whose data was just blocked and the new
    notice levels."""
    changes: dict[int, LineChange] = {}
    charged_lines: list[int] = []
    exhausted: list[int] = []
    new_levels: dict[int, int] = {}
    for pk in sorted(usage_by_line):
        line, usage = lines[pk], usage_by_line[pk]
        if usage.charged_records:
            change = settle_usage(line=line, rule=rules.get(pk), used_bytes=usage.charged_bytes)
            charged_lines.append(pk)
        else:
            # Only an earlier package's usage: nothing of the current package moves, not even a
            # notice level or a block that its balance alone would imply (docs/usage.md).
            change = LineChange.unchanged(line)
        # The line's used data is its history: it counts the uncharged usage too.
        change.used += usage.uncharged_bytes
        changes[pk] = change
        if change.data_blocked and not (line.data_blocked or line.status == Line.Status.DATA_EXHAUSTED):
            exhausted.append(pk)
            logger.info("line_data_exhausted line=%s overage=%s", pk, change.overage)
        if change.notice_level > line.usage_notice_level:
            new_levels[pk] = change.notice_level
    _write_lines(changes, now=now)
    # The bulk UPDATE bypasses the history signals: record the line states it changed.
    history.record_changes(
        [
            (Line(pk=pk, iccid=lines[pk].iccid), {"status": lines[pk].status}, {"status": change.status})
            for pk, change in changes.items()
            if change.status != lines[pk].status
        ],
        action="usage_batch",
        reason="data used up",
        now=now,
    )
    return charged_lines, exhausted, new_levels


def _late_records(usage_by_line: dict[int, LineUsage], *, batch: UsageBatch, now: datetime) -> list[dict]:
    """The uncharged records that arrived more than USAGE_LATENESS_WINDOW after their period ended:
    past any partner retry, so worth the partner's (and the operator's) attention. Uncharged records
    inside the window are the normal tail of the previous package and are only counted."""
    window = settings.USAGE_LATENESS_WINDOW
    index_of: dict[str, int] = {}
    for record_id, index in zip(reversed(batch.ids), reversed(batch.indexes), strict=True):
        index_of[record_id] = index  # the first of repeated ids is the one inserted
    late = []
    for line_id, usage in usage_by_line.items():
        for record_id, size, end in usage.uncharged:
            if now - end > window:
                late.append({"index": index_of[record_id], "id": record_id})
                logger.warning(
                    "usage_record_late line=%s id=%r bytes=%s period_end=%s received=%s window=%s",
                    line_id,
                    record_id,
                    size,
                    end.isoformat(),
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
        unnest, unnest_params = _unnest(
            (list(changes), "bigint[]"),
            ([c.remaining for c in changes.values()], "bigint[]"),
            ([c.used for c in changes.values()], "bigint[]"),
            ([c.overage for c in changes.values()], "bigint[]"),
            ([c.status for c in changes.values()], "varchar[]"),
            ([c.notice_level for c in changes.values()], "integer[]"),
            ([c.data_blocked for c in changes.values()], "boolean[]"),
        )
        sql = (
            f"{set_columns} FROM {unnest} "
            f"AS v (id, remaining, used, overage, status, notice_level, data_blocked) WHERE {table}.{qn('id')} = v.id"
        )
        params: list = [now, *unnest_params]
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
