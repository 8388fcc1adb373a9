"""Bench 2, usage ingestion: records accepted per second through the real partner endpoint
(gunicorn on loopback, signed batches of 1000) against the same kind of records applied by
calling partner.services.usage.ingest_usage directly (the ceiling), at the same concurrency.

Lines carry an enabled 500 MB rule and 8 GB of data, so every batch runs the whole path
(insert, lock, update, trigger evaluation) without opening renewals. Each client (a process for
the direct path, a thread for HTTP) owns a disjoint slice of the lines, so clients never wait on
each other's row locks; every record has a new id, so every record is applied.

    scripts/with-services .venv/bin/python -m bench.ingest [--records 50000 --batch 1000 --concurrency 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import threading
from datetime import UTC, datetime
from urllib.parse import urlsplit

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


def _direct_worker(batches, barrier, results):
    from django.db import connection

    from partner.api import parse_record
    from partner.services.usage import ingest_usage

    now = datetime.now(UTC)
    parsed = [[parse_record(i, r, now=now) for i, r in enumerate(batch)] for batch in batches]
    connection.close()
    barrier.wait()
    accepted = 0
    for batch in parsed:
        accepted += ingest_usage(records=batch).accepted
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


def run_http(client_batches, *, base_url: str, secret: str) -> tuple[float, int, dict]:
    from partner import signature as partner_signature

    parts = urlsplit(base_url)
    bodies = [[json.dumps({"records": batch}).encode() for batch in batches] for batches in client_batches]
    barrier = threading.Barrier(len(bodies) + 1)
    accepted = [0] * len(bodies)
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        barrier.wait()
        for body in bodies[k]:
            header = partner_signature.sign(secret=secret, body=body, now=datetime.now(UTC))
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
                accepted[k] += json.loads(payload)["accepted"]
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(bodies))]
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

    direct_s, direct_n = run_direct(
        _batches(prefix="d", records=records, batch=batch, concurrency=concurrency, lines=lines)
    )
    assert direct_n == records, (direct_n, records)
    direct_rate = direct_n / direct_s
    print(
        f"   direct ingest_usage ({concurrency} processes): {direct_n:,} records in {direct_s:.2f} s = {direct_rate:,.0f} rec/s"
    )

    with common.gunicorn(workers=web_workers, log_name="ingest-gunicorn") as base_url:
        http_s, http_n, statuses = run_http(
            _batches(prefix="h", records=records, batch=batch, concurrency=concurrency, lines=lines),
            base_url=base_url,
            secret=settings.PARTNER_USAGE_SECRET,
        )
    assert http_n == records and set(statuses) == {200}, (http_n, statuses)
    http_rate = http_n / http_s
    ratio = http_rate / direct_rate
    print(
        f"   HTTP via gunicorn ({web_workers} sync workers, {concurrency} clients): {http_n:,} records in {http_s:.2f} s "
        f"= {http_rate:,.0f} rec/s   statuses {statuses}"
    )
    print(
        f"   ratio HTTP/direct: {ratio:.2f}  (target >= 0.7)   HTTP target >= 10,000 rec/s: "
        f"{'met' if http_rate >= 10_000 else 'MISSED'}"
    )
    total = common.scalar("SELECT count(*) FROM accounts_usagerecord")
    assert total == 2 * records, total
    return {"direct_rate": direct_rate, "http_rate": http_rate, "ratio": ratio, "statuses": statuses}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--web-workers", type=int, default=None)
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
    )


if __name__ == "__main__":
    main()
