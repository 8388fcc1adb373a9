"""The usage records' day partitions on PostgreSQL (docs/usage.md, "History: partitions, dedup
window, retention"): one partition per UTC day of `period_start`, made ahead by beat and on demand
by a batch that needs one, a DEFAULT partition as the safety net, and retention that drops whole
days. SQLite (`make run`) has no partitioning: every function here does nothing there.

Lock order, for every function that changes partitions: the parent table (SHARE UPDATE
EXCLUSIVE), then the default partition (ACCESS EXCLUSIVE), each with a lock timeout, so a busy
ingest makes a change wait for the next beat rather than queue every batch behind it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from . import metrics
from .models import UsageRetention

logger = logging.getLogger(__name__)

TABLE = "accounts_usagerecord"
DEFAULT_PARTITION = f"{TABLE}_default"
PREFIX = f"{TABLE}_p"
# Days made ahead of today by beat, so a batch crossing midnight finds tomorrow's partition.
AHEAD_DAYS = 2
LOCK_TIMEOUT = "2s"

# Days known to have their partition in this process: on-demand creation costs a set lookup per
# batch, not a query. A dropped day is never asked for again (its records are outside the dedup
# window, refused before they get here), so the cache does not need to forget.
_known_days: set[date] = set()


def forget_known_days() -> None:
    """Empty this process's cache (a test that drops partitions inside its transaction)."""
    _known_days.clear()


def is_partitioned() -> bool:
    return connection.vendor == "postgresql"


def partition_name(day: date) -> str:
    return f"{PREFIX}{day:%Y%m%d}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def day_partitions() -> dict[date, str]:
    """The day partitions attached to the usage table: day -> table name."""
    if not is_partitioned():
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass AND c.relname LIKE %s",
            [TABLE, PREFIX + "%"],
        )
        names = [row[0] for row in cursor.fetchall()]
    return {datetime.strptime(name[len(PREFIX) :], "%Y%m%d").date(): name for name in names}


def _set_lock_timeout(cursor) -> None:
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])


def _create_day_partition(cursor, day: date) -> int:
    """Create and attach day's partition, moving the day's rows out of the default partition in the
    same transaction (PostgreSQL refuses a new partition whose range the default holds rows of).
    Returns how many rows were moved. The caller holds a transaction."""
    name = connection.ops.quote_name(partition_name(day))
    table, default = connection.ops.quote_name(TABLE), connection.ops.quote_name(DEFAULT_PARTITION)
    start, end = day_bounds(day)
    _set_lock_timeout(cursor)
    cursor.execute(f"LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE")
    # Inserts of this day wait here until the commit: none can slip into the default between the
    # move and the ATTACH (whose check of the default would then fail).
    cursor.execute(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE")
    cursor.execute("SELECT to_regclass(%s)", [partition_name(day)])
    if cursor.fetchone()[0] is not None:
        return 0  # another process made it while we waited for the locks
    cursor.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {default} WHERE period_start >= %s AND period_start < %s RETURNING *) "
        f"INSERT INTO {name} SELECT * FROM moved",
        [start, end],
    )
    moved = cursor.rowcount
    cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [start, end])
    return moved


def ensure_day_partitions(days: Iterable[date]) -> list[date]:
    """Make the missing partitions of these days; returns the days made. A day whose partition
    cannot be made now (a lock not granted within LOCK_TIMEOUT) is logged and left to the next
    call: its rows go to the default partition meanwhile, so nothing is refused or lost."""
    if not is_partitioned():
        return []
    wanted = set(days) - _known_days
    if not wanted:
        return []
    existing = day_partitions()
    _known_days.update(existing)
    made = []
    for day in sorted(wanted - set(existing)):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                moved = _create_day_partition(cursor, day)
        except DatabaseError as exc:
            logger.warning("usage_partition_not_created day=%s error=%s", day, str(exc).strip())
            metrics.USAGE_PARTITIONS.labels(action="create_failed").inc()
            continue
        _known_days.add(day)
        made.append(day)
        metrics.USAGE_PARTITIONS.labels(action="created").inc()
        logger.info("usage_partition_created day=%s moved_from_default=%s", day, moved)
    return made


def ensure_partitions_for(starts: Iterable[datetime]) -> list[date]:
    """On demand, for a batch: the partitions of its records' days (UTC)."""
    if not is_partitioned():
        return []
    return ensure_day_partitions({start.astimezone(UTC).date() for start in starts})


def make_partitions_ahead(*, now: datetime) -> list[date]:
    """Every day of the dedup window up to AHEAD_DAYS after today (beat)."""
    today = now.astimezone(UTC).date()
    first = (now - settings.USAGE_DEDUP_WINDOW).astimezone(UTC).date()
    return ensure_day_partitions(first + timedelta(days=n) for n in range((today - first).days + AHEAD_DAYS + 1))


def retention_cutoff(*, now: datetime, retention: timedelta) -> date:
    """The first day kept: days before it are dropped. Never inside the dedup window, whatever
    the retention says (the operator's setting refuses it too)."""
    keep = max(retention, settings.USAGE_DEDUP_WINDOW)
    return (now - keep).astimezone(UTC).date()


def drop_partitions_before(cutoff: date) -> list[date]:
    """DETACH and DROP the day partitions of days before `cutoff`, and delete the default
    partition's rows of those days. Returns the days dropped.

    Not DETACH … CONCURRENTLY: PostgreSQL does not allow it on a table with a default partition.
    A plain DETACH holds the parent's ACCESS EXCLUSIVE lock for a catalogue change only; it waits
    at most LOCK_TIMEOUT for running batches, else the day is left to the next run."""
    if not is_partitioned():
        return []
    table = connection.ops.quote_name(TABLE)
    dropped = []
    for day, name in sorted(day_partitions().items()):
        if day >= cutoff:
            continue
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                _set_lock_timeout(cursor)
                cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {connection.ops.quote_name(name)}")
                cursor.execute(f"DROP TABLE {connection.ops.quote_name(name)}")
        except DatabaseError as exc:
            logger.warning("usage_partition_not_dropped day=%s error=%s", day, str(exc).strip())
            metrics.USAGE_PARTITIONS.labels(action="drop_failed").inc()
            continue
        _known_days.discard(day)
        dropped.append(day)
        metrics.USAGE_PARTITIONS.labels(action="dropped").inc()
        logger.info("usage_partition_dropped day=%s partition=%s", day, name)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {connection.ops.quote_name(DEFAULT_PARTITION)} WHERE period_start < %s",
            [day_bounds(cutoff)[0]],
        )
        if cursor.rowcount:
            logger.info("usage_default_partition_pruned rows=%s before=%s", cursor.rowcount, cutoff)
    return dropped


def maintain(*, now: datetime) -> tuple[list[date], list[date]]:
    """Beat's pass: make the partitions ahead, drop the days past the operator's retention.
    Returns (days made, days dropped)."""
    if not is_partitioned():
        return [], []
    made = make_partitions_ahead(now=now)
    dropped = drop_partitions_before(retention_cutoff(now=now, retention=UsageRetention.current().period))
    return made, dropped
