"""Bench 2, usage ingestion: records accepted per second through the real partner endpoint
(gunicorn on loopback, signed batches of 1000) against the same kind of records applied by
calling partner.services.usage.ingest_usage directly (the ceiling), at the same concurrency.

Lines carry an enabled 500 MB rule and 8 GB of data, so every batch runs the whole path
(insert, lock, update, trigger evaluation) without opening renewals. Each client (a process for
the direct path, a thread for HTTP) owns a disjoint slice of the lines, so clients never wait on
each other's row locks; every record has a new id, so every record is applied.

The load generator shares the 2 cores with the server, so its per-request cost is kept out of the
clock: every body is encoded (orjson) and signed before the clock starts (a signature is valid for
PARTNER_SIGNATURE_TOLERANCE, 5 minutes, far longer than a run); the bench prints what that
preparation costs per request. Inside the clock a client only writes bytes and reads the answer.

--profile samples every process with py-spy (`--subprocesses`, so the forked direct workers, the
gunicorn workers and the client threads alike) and reads pg_stat_statements, once per phase, and
prints the top entries of each (docs/usage.md, "The ingest path").

    scripts/with-services .venv/bin/python -m bench.ingest [--records 50000 --batch 1000 --concurrency 4] [--profile]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from . import common

START = "2026-11-01T10:00:00Z"
END = "2026-11-01T10:05:00Z"


def _batches(*, prefix: str, records: int, batch: int, concurrency: int, lines: int) -> list[list[list[dict]]]:
    """Per client, its batches of raw records (the partner's JSON shape)."""
    per_client = lines // concurrency
    out: list[list[list[dict]]] = [[] for _ in range(concurrency)]
    n_batches = -(-records // batch)
    for b in range(n_batches):
        client = b % concurrency
        size = min(batch, records - b * batch)
        base = client * per_client
        offset = (len(out[client]) * batch) % per_client
        out[client].append(
            [
                {
                    "id": f"{prefix}-{b}-{i}",
                    "iccid": common.iccid(base + 1 + (offset + i) % per_client),
                    "bytes": 1000,
                    "start": START,
                    "end": END,
                }
                for i in range(size)
            ]
        )
    return out


# --- profiles --------------------------------------------------------------------------------

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


@contextmanager
def py_spy(out: Path, *, enabled: bool):
    """py-spy sampling this process and every child (forked direct workers, gunicorn and its
    workers) into a raw (collapsed stacks) file while the block runs."""
    if not enabled:
        yield
        return
    spy = subprocess.Popen(
        [
            str(Path(os.sys.executable).parent / "py-spy"),
            "record",
            "--format",
            "raw",
            "--subprocesses",
            "--nonblocking",
            "--rate",
            "200",
            "--output",
            str(out),
            "--pid",
            str(os.getpid()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the work starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def _role(process_frame: str) -> str:
    """What a process is, from py-spy's `process PID:"cmdline"` frame (the innermost one)."""
    if "gunicorn" in process_frame:
        return "gunicorn workers"
    pid = re.search(r"process (\d+)", process_frame)
    return "bench (load generator)" if pid and int(pid.group(1)) == os.getpid() else "direct workers"


def profile_summary(path: Path, *, top: int = 8) -> list[str]:
    """Per kind of process, its share of the samples, then the functions with most samples of
    their own (self time: the leaf frame) as % of that kind's samples."""
    if not path.exists():
        return [f"   (no py-spy profile at {path})"]
    own: dict[str, Counter] = {}
    inclusive: dict[str, Counter] = {}
    totals: Counter = Counter()
    for row in path.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        processes = [f for f in frames if f.startswith("process ")]
        role = _role(processes[-1]) if processes else "bench (load generator)"
        names = []
        for frame in frames[len(processes) :]:
            m = FRAME.match(frame)
            names.append(f"{m['function']} ({Path(m['file']).name})" if m else frame)
        if not names:
            continue
        n = int(count)
        totals[role] += n
        own.setdefault(role, Counter())[names[-1]] += n
        for name in set(names):
            inclusive.setdefault(role, Counter())[name] += n
    lines = []
    grand = sum(totals.values()) or 1
    for role, n in totals.most_common():
        lines.append(f"   py-spy {role}: {100 * n / grand:.0f}% of all samples ({n} samples)")
        lines.append("     self: " + "; ".join(f"{name} {100 * c / n:.0f}%" for name, c in own[role].most_common(top)))
        hot = [
            (name, c)
            for name, c in inclusive[role].most_common(60)
            if any(
                k in name
                for k in (
                    "(api.py)",
                    "(usage.py)",
                    "(signature.py)",
                    "orjson",
                    "loads",
                    "dumps",
                    "execute",
                    "(client.py)",
                    "parse",
                    "verify",
                )
            )
        ][:top]
        lines.append("     incl: " + "; ".join(f"{name} {100 * c / n:.0f}%" for name, c in hot))
    return lines


def pg_statements_reset(*, enabled: bool) -> None:
    if enabled:
        common.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        common.execute("SELECT pg_stat_statements_reset()")


def pg_statements_top(*, enabled: bool, top: int = 6) -> list[str]:
    if not enabled:
        return []
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT calls, total_exec_time, rows, regexp_replace(query, '[[:space:]]+', ' ', 'g') FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "ORDER BY total_exec_time DESC LIMIT %s",
            [top],
        )
        return [
            f"   pg {calls:>6} calls {total:>9.0f} ms {rows:>8} rows  {query[:110]}"
            for calls, total, rows, query in cursor.fetchall()
        ]


# --- the two paths ---------------------------------------------------------------------------


def _direct_worker(batches, barrier, results):
    from django.db import connection

    from partner.api import parse_batch
    from partner.services.usage import ingest_usage

    now = datetime.now(UTC)
    # Parsed before the clock, as the HTTP path's load generator encodes before it: the clock
    # measures what the service does with a parsed batch.
    parsed = [parse_batch(batch, now=now)[0] for batch in batches]
    connection.close()
    barrier.wait()
    accepted = 0
    for batch in parsed:
        accepted += ingest_usage(records=batch, now=datetime.now(UTC)).accepted
    results.put(accepted)
    connection.close()


def run_direct(client_batches) -> tuple[float, int]:
    """ingest_usage from `concurrency` forked processes; (seconds, records accepted)."""
    from django.db import connections

    connections.close_all()  # children open their own
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(client_batches) + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_direct_worker, args=(b, barrier, results)) for b in client_batches]
    for p in procs:
        p.start()
    barrier.wait()
    with common.timed() as t:
        accepted = sum(results.get(timeout=600) for _ in procs)
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode
    return t(), accepted


def prepare_requests(client_batches, *, secret: str) -> tuple[list[list[tuple[bytes, str]]], float]:
    """Every request's body and X-Signature, made before the clock; (requests, µs per request)."""
    from partner import signature as partner_signature

    with common.timed() as t:
        now = datetime.now(UTC)
        requests = [
            [
                (body, partner_signature.sign(secret=secret, body=body, now=now))
                for body in (orjson.dumps({"records": batch}) for batch in batches)
            ]
            for batches in client_batches
        ]
    count = sum(len(r) for r in requests) or 1
    return requests, t() * 1e6 / count


def run_http(requests, *, base_url: str, warm_up: list | None = None) -> tuple[float, int, dict]:
    """The clients send their requests over keep-alive connections; `warm_up` (one list of
    requests per client) is sent first, outside the clock and the figures: gunicorn's sync
    workers import the application on their first request, which is not what a partner's
    steady stream of batches meets."""
    from partner import signature as partner_signature

    parts = urlsplit(base_url)
    barrier = threading.Barrier(len(requests) + 1)
    accepted = [0] * len(requests)
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        for body, header in (warm_up or [[]] * len(requests))[k]:
            conn.request(
                "POST",
                "/api/partner/usage",
                body=body,
                headers={"Content-Type": "application/json", partner_signature.HEADER: header},
            )
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            conn.close()  # a new connection: the next warm-up request may reach another worker
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        barrier.wait()
        for body, header in requests[k]:
            conn.request(
                "POST",
                "/api/partner/usage",
                body=body,
                headers={"Content-Type": "application/json", partner_signature.HEADER: header},
            )
            response = conn.getresponse()
            payload = response.read()
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status == 200:
                accepted[k] += orjson.loads(payload)["accepted"]
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(requests))]
    for th in threads:
        th.start()
    barrier.wait()
    with common.timed() as t:
        for th in threads:
            th.join()
    return t(), sum(accepted), statuses


def run(
    *,
    records: int = 50_000,
    batch: int = 1000,
    concurrency: int = 4,
    lines: int = 20_000,
    web_workers: int | None = None,
    profile: bool = False,
) -> dict:
    from django.conf import settings

    web_workers = web_workers or concurrency
    package = common.bench_package()
    common.load_lines(first=1, last=lines, package_id=package.pk)
    common.load_rules(first=1, last=lines, package_id=package.pk)
    common.vacuum_analyze("accounts_line", "renewals_renewalrule")
    print(
        f"   {lines:,} lines with rules; {records:,} records per path in batches of {batch}, concurrency {concurrency}"
    )
    common.OUT_DIR.mkdir(parents=True, exist_ok=True)

    pg_statements_reset(enabled=profile)
    with py_spy(common.OUT_DIR / "ingest-direct.pyspy.txt", enabled=profile):
        direct_s, direct_n = run_direct(
            _batches(prefix="d", records=records, batch=batch, concurrency=concurrency, lines=lines)
        )
    direct_sql = pg_statements_top(enabled=profile)
    assert direct_n == records, (direct_n, records)
    direct_rate = direct_n / direct_s
    print(
        f"   direct ingest_usage ({concurrency} processes): {direct_n:,} records in {direct_s:.2f} s = {direct_rate:,.0f} rec/s"
    )

    requests, prepare_us = prepare_requests(
        _batches(prefix="h", records=records, batch=batch, concurrency=concurrency, lines=lines),
        secret=settings.PARTNER_USAGE_SECRET,
    )
    print(f"   load generator: bodies encoded (orjson) and signed before the clock, {prepare_us:,.0f} µs per request")
    # Two one-record batches per worker and client before the clock (their records are counted below).
    warm_up_batches = _batches(
        prefix="w", records=2 * web_workers * concurrency, batch=1, concurrency=concurrency, lines=lines
    )
    warm_up, _cost = prepare_requests(warm_up_batches, secret=settings.PARTNER_USAGE_SECRET)
    warm_up_records = 2 * web_workers * concurrency
    with common.gunicorn(workers=web_workers, log_name="ingest-gunicorn") as base_url:
        run_http([[] for _ in requests], base_url=base_url, warm_up=warm_up)
        pg_statements_reset(enabled=profile)
        with py_spy(common.OUT_DIR / "ingest-http.pyspy.txt", enabled=profile):
            http_s, http_n, statuses = run_http(requests, base_url=base_url)
        http_sql = pg_statements_top(enabled=profile)
    assert http_n == records and set(statuses) == {200}, (http_n, statuses)
    http_rate = http_n / http_s
    ratio = http_rate / direct_rate
    print(
        f"   HTTP via gunicorn ({web_workers} sync workers, {concurrency} clients): {http_n:,} records in {http_s:.2f} s "
        f"= {http_rate:,.0f} rec/s   statuses {statuses}"
    )
    print(f"   ratio HTTP/direct: {ratio:.2f}   load after: {common.machine()}")
    if profile:
        print("   -- profile, direct phase")
        for row in profile_summary(common.OUT_DIR / "ingest-direct.pyspy.txt") + direct_sql:
            print(row)
        print("   -- profile, HTTP phase")
        for row in profile_summary(common.OUT_DIR / "ingest-http.pyspy.txt") + http_sql:
            print(row)
    common.goal("ingest over HTTP", http_rate, target=20000, at_least=True, unit=" rec/s")
    common.goal("ingest HTTP vs direct", ratio, target=0.8, at_least=True, unit="×")
    total = common.scalar("SELECT count(*) FROM accounts_usagerecord")
    assert total == 2 * records + warm_up_records, total
    return {"direct_rate": direct_rate, "http_rate": http_rate, "ratio": ratio, "statuses": statuses}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--web-workers", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="py-spy and pg_stat_statements, per phase")
    args = parser.parse_args(argv)
    common.setup_django()
    common.log_to_file("ingest")
    common.header("bench 2: usage ingestion, HTTP (gunicorn) vs ingest_usage directly")
    run(
        records=args.records,
        batch=args.batch,
        concurrency=args.concurrency,
        lines=args.lines,
        web_workers=args.web_workers,
        profile=args.profile,
    )


if __name__ == "__main__":
    main()
