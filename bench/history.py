"""Bench 7, history: does the cost of usage grow with the records kept? Measures, in one run, on
an EMPTY usage table and then on a FULL one (≥ 50 million historical records over ~60 day
partitions, docs/usage.md "History"):

- ingest rate: new records applied by partner.services.usage.ingest_usage from `--concurrency`
  forked processes (bench/ingest.py's direct path), batches of 1,000;
- dedup check: the same batches sent again (every record a duplicate): time per record;
- account page p95: GET / (the account page, its 30-day chart) through the Django test client
  for logged-in customers whose lines have the same 30 days of their own usage in both phases.

Each figure's FULL/EMPTY ratio is printed against the goal (≤ 1.2). The load writes day
partitions FAST: each day is filled with one INSERT … SELECT generate_series into a plain table
with no index, then attached (the indexes are built once, sorted, by the ATTACH; a CHECK that
matches the range spares its validation scan). Its time and the table's size are printed.

    WITH_SERVICES_QUIET=1 WITH_SERVICES_PG_OPTS="-c shared_buffers=1GB -c max_wal_size=8GB \\
        -c maintenance_work_mem=512MB -c checkpoint_timeout=30min" \\
        scripts/with-services .venv/bin/python -m bench.history [--records 50000000 --days 60]

The history's records belong to other lines than the measured customers' (the customers' own
history is the same in both phases), so a ratio above 1 is the table's size, not more rows per
page. ~50 M rows take ~12 GB of disk with their indexes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
from datetime import UTC, date, datetime, timedelta

from . import common

CUSTOMERS = 20  # logged-in customers whose account page is measured
CUSTOMER_HISTORY_PER_DAY = 24  # one record an hour over 30 days, for each customer's line


def _batches(*, prefix: str, records: int, concurrency: int, first_line: int, lines: int, start: datetime):
    """Per client, its batches of 1,000 new records (the partner's JSON shape) on its own lines."""
    per_client = lines // concurrency
    out: list[list[list[dict]]] = [[] for _ in range(concurrency)]
    stamp, end = start.isoformat(), (start + timedelta(minutes=5)).isoformat()
    for b in range(-(-records // 1000)):
        client = b % concurrency
        size = min(1000, records - b * 1000)
        base = first_line + client * per_client
        out[client].append(
            [
                {
                    "id": f"{prefix}-{b}-{i}",
                    "iccid": common.iccid(base + (b * 7 + i) % per_client),
                    "bytes": 1000,
                    "start": stamp,
                    "end": end,
                }
                for i in range(size)
            ]
        )
    return out


def _worker(batches, barrier, results):
    from django.db import connection

    from partner.api import parse_record
    from partner.services.usage import ingest_usage

    now = datetime.now(UTC)
    parsed = [[parse_record(i, r, now=now) for i, r in enumerate(batch)] for batch in batches]
    connection.close()
    barrier.wait()
    accepted = duplicates = 0
    for batch in parsed:
        result = ingest_usage(records=batch)
        accepted += result.accepted
        duplicates += result.duplicates
    results.put((accepted, duplicates))
    connection.close()


def _run_clients(client_batches) -> tuple[float, int, int]:
    """ingest_usage from one forked process per client: (seconds, accepted, duplicates)."""
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(client_batches) + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(b, barrier, results)) for b in client_batches]
    for p in procs:
        p.start()
    barrier.wait()
    with common.timed() as t:
        outcomes = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode
    return t(), sum(a for a, _ in outcomes), sum(d for _, d in outcomes)


def _account_page_times(*, requests: int) -> list[float]:
    from django.conf import settings
    from django.test import Client

    from accounts.models import User

    if "testserver" not in settings.ALLOWED_HOSTS:  # the test client's host (pytest-django adds it)
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    users = list(User.objects.filter(email__startswith="bench").order_by("pk")[:CUSTOMERS])
    clients = []
    for user in users:
        client = Client()
        client.force_login(user)
        warm = client.get("/")
        assert warm.status_code == 200, (
            warm.status_code,
            warm.get("Location"),
        )  # warm: templates, translations, the session
        clients.append(client)
    times = []
    for n in range(requests):
        with common.timed() as t:
            response = clients[n % len(clients)].get("/")
        assert response.status_code == 200, response.status_code
        times.append(t() * 1000)
    return times


def measure(*, phase: str, ingest_records: int, concurrency: int, first_line: int, lines: int, page_requests: int):
    start = datetime.now(UTC) - timedelta(hours=1)
    batches = _batches(
        prefix=phase, records=ingest_records, concurrency=concurrency, first_line=first_line, lines=lines, start=start
    )
    seconds, accepted, _dups = _run_clients(batches)
    assert accepted == ingest_records, (accepted, ingest_records)
    again, accepted_again, duplicates = _run_clients(batches)
    assert (accepted_again, duplicates) == (0, ingest_records), (accepted_again, duplicates)
    times = _account_page_times(requests=page_requests)
    figures = {
        "ingest_rate": ingest_records / seconds,
        "dedup_us": again / ingest_records * 1e6,
        "page_p95": common.percentile(times, 95),
        "page_p50": common.percentile(times, 50),
    }
    print(
        f"   {phase}: ingest {figures['ingest_rate']:,.0f} records/s, dedup {figures['dedup_us']:,.1f} µs/record, "
        f"account page p50 {figures['page_p50']:.1f} ms p95 {figures['page_p95']:.1f} ms ({page_requests} requests)"
    )
    return figures


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def load_history(*, records: int, days: int, first_line_id: int, lines: int) -> dict:
    """`records` records over the `days` days before today, each day written into a plain table,
    the day's existing rows copied in, and the table attached as the day's partition."""
    from django.db import connection

    from accounts import partitions

    per_day = -(-records // days)
    today = datetime.now(UTC).date()
    wanted = [today - timedelta(days=n) for n in range(days, 0, -1)]
    partitions.ensure_day_partitions(wanted)
    seq = common.scalar("SELECT pg_get_serial_sequence('accounts_usagerecord', 'id')")
    first_id = common.scalar("SELECT nextval(%s)", [seq])
    common.execute("SELECT setval(%s, %s)", [seq, first_id + per_day * days + 1])
    loaded = 0
    with common.timed() as t:
        for n, day in enumerate(wanted):
            count = min(per_day, records - loaded)
            if count <= 0:
                break
            name, stage = partitions.partition_name(day), "bench_history_stage"
            lo, hi = _day_start(day), _day_start(day) + timedelta(days=1)
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {stage}")
                cursor.execute(
                    f"CREATE TABLE {stage} (LIKE accounts_usagerecord INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                )
                cursor.execute(
                    f"""
                    INSERT INTO {stage} (id, partner_record_id, bytes, period_start, period_end, received_at,
                                         line_id, charged)
                    SELECT %s + g, 'hist-' || %s || '-' || g, 1000 + g %% 997,
                           %s + make_interval(secs => g * 86400.0 / %s),
                           %s + make_interval(secs => g * 86400.0 / %s + 300),
                           %s + make_interval(secs => g * 86400.0 / %s + 600),
                           %s + g %% %s, true
                    FROM generate_series(0, %s - 1) g
                    """,
                    [first_id + n * per_day, f"{day:%Y%m%d}", lo, count, lo, count, lo, count]
                    + [first_line_id, lines, count],
                )
                cursor.execute(f"INSERT INTO {stage} SELECT * FROM {name}")  # the customers' own history
                cursor.execute(
                    f"ALTER TABLE {stage} ADD CONSTRAINT bench_in_range "
                    "CHECK (period_start >= %s AND period_start < %s)",
                    [lo, hi],
                )
                cursor.execute(f"ALTER TABLE accounts_usagerecord DETACH PARTITION {name}")
                cursor.execute(f"DROP TABLE {name}")
                cursor.execute(f"ALTER TABLE {stage} RENAME TO {name}")
                cursor.execute(
                    f"ALTER TABLE accounts_usagerecord ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [lo, hi]
                )
                cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT bench_in_range")
                cursor.execute(f"ANALYZE {name}")
            loaded += count
            if (n + 1) % 10 == 0:
                print(f"   … {n + 1} days, {loaded:,} records, {t():.0f} s")
    size = common.scalar(
        "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('accounts_usagerecord'::regclass)"
    )
    return {"loaded": loaded, "seconds": t(), "bytes": size}


def load_customers(*, lines: int, package_id: int) -> None:
    """Lines 1..CUSTOMERS are the customers' (bench1..), each with 30 days of its own usage;
    the rest carry the history and take the ingest."""
    from accounts import partitions

    common.load_users(first=1, last=CUSTOMERS)
    common.load_lines(first=1, last=CUSTOMERS, package_id=package_id, with_owners=True)
    common.load_lines(first=CUSTOMERS + 1, last=lines, package_id=package_id)
    common.load_rules(first=CUSTOMERS + 1, last=lines, package_id=package_id)
    now = datetime.now(UTC)
    partitions.make_partitions_ahead(now=now)
    hours = 30 * CUSTOMER_HISTORY_PER_DAY
    partitions.ensure_partitions_for(now - timedelta(hours=h) for h in range(1, hours + 1))
    common.execute(
        """
        INSERT INTO accounts_usagerecord (partner_record_id, line_id, bytes, period_start, period_end, received_at)
        SELECT 'own-' || l.id || '-' || h, l.id, 5000000, %s - make_interval(hours => h),
               %s - make_interval(hours => h) + interval '5 minutes', %s - make_interval(hours => h) + interval '10 minutes'
        FROM accounts_line l CROSS JOIN generate_series(1, %s) h
        WHERE l.owner_id IS NOT NULL AND l.iccid <= %s
        """,
        [now, now, now, hours, common.iccid(CUSTOMERS)],
    )


def run(
    *,
    records: int = 50_000_000,
    days: int = 60,
    lines: int = 20_000,
    ingest_records: int = 40_000,
    concurrency: int = 2,
    page_requests: int = 300,
) -> dict:
    from accounts.models import Line

    package = common.bench_package()
    load_customers(lines=lines, package_id=package.pk)
    common.vacuum_analyze("accounts_line", "accounts_user", "renewals_renewalrule")
    common.execute("ANALYZE accounts_usagerecord")
    history_first_line = Line.objects.get(iccid=common.iccid(CUSTOMERS + 1)).pk
    ingest_lines = dict(first_line=CUSTOMERS + 1, lines=lines - CUSTOMERS)

    print(f"-- EMPTY: no history, {CUSTOMERS} customers with 30 days of their own usage")
    empty = measure(
        phase="empty",
        ingest_records=ingest_records,
        concurrency=concurrency,
        page_requests=page_requests,
        **ingest_lines,
    )

    free = shutil.disk_usage("/").free
    print(f"-- loading {records:,} records over {days} days ({free / common.GB:,.0f} GB free on /)")
    load = load_history(records=records, days=days, first_line_id=history_first_line, lines=lines - CUSTOMERS)
    # The FULL phase measures the steady state, not the load's aftermath: autovacuum would otherwise
    # start on 60 freshly written partitions (insert-only tables are vacuumed too) and a checkpoint
    # would flush 10 GB during the measurement, on the same cores (the first quiet run, RESULTS.md).
    with common.timed() as settle:
        common.execute("VACUUM (ANALYZE) accounts_usagerecord")
        common.execute("CHECKPOINT")
    print(f"   VACUUM (ANALYZE) and CHECKPOINT after the load: {settle():.0f} s (not part of the load's time)")
    total = common.scalar("SELECT count(*) FROM accounts_usagerecord") if records <= 1_000_000 else None
    print(
        f"   loaded {load['loaded']:,} records in {load['seconds']:.0f} s "
        f"({load['loaded'] / max(load['seconds'], 1e-9):,.0f} records/s); usage table and indexes "
        f"{load['bytes'] / common.GB:,.2f} GB; {shutil.disk_usage('/').free / common.GB:,.0f} GB free on /"
        + (f"; {total:,} rows" if total is not None else "")
    )

    print(f"-- FULL: {load['loaded']:,} historical records")
    full = measure(
        phase="full",
        ingest_records=ingest_records,
        concurrency=concurrency,
        page_requests=page_requests,
        **ingest_lines,
    )
    ratios = {
        "ingest": empty["ingest_rate"] / full["ingest_rate"],
        "dedup": full["dedup_us"] / empty["dedup_us"],
        "page": full["page_p95"] / empty["page_p95"],
    }
    print(
        f"   ratios FULL/EMPTY (time): ingest {ratios['ingest']:.2f}, dedup {ratios['dedup']:.2f}, "
        f"account page p95 {ratios['page']:.2f}"
    )
    size = f"{load['loaded'] / 1e6:,.1f} M records"
    common.goal("history ingest time full/empty", ratios["ingest"], target=1.2, at_least=False, note=size)
    common.goal("history dedup check full/empty", ratios["dedup"], target=1.2, at_least=False, note=size)
    common.goal("history account page p95 full/empty", ratios["page"], target=1.2, at_least=False, note=size)
    return {"empty": empty, "full": full, "ratios": ratios, "load": load}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000_000, help="historical records to load")
    parser.add_argument("--days", type=int, default=60, help="days (partitions) they are spread over")
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--ingest-records", type=int, default=40_000, help="new records per measured phase")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--page-requests", type=int, default=300)
    args = parser.parse_args(argv)
    common.setup_django()
    common.log_to_file("history")
    common.header(f"history: {args.records:,} records over {args.days} days vs an empty table")
    run(
        records=args.records,
        days=args.days,
        lines=args.lines,
        ingest_records=args.ingest_records,
        concurrency=args.concurrency,
        page_requests=args.page_requests,
    )


if __name__ == "__main__":
    main()
