"""Bench 6, a burst: N lines (10,000) cross their renewal threshold at once, as production sees it:
the network partner's usage for all of them arrives through the real endpoint (gunicorn on
loopback) in signed batches of at most MAX_RECORDS (1,000) records, sent back to back, so the
burst is N/1000 requests; each request opens the renewals of the lines it took below their
threshold and hands them to the workers after its commit (partner.services.usage → renewals.
services.triggers.evaluate_triggers). A real Celery worker (--concurrency processes) charges them
through the processor write limiter at --limit writes/s.

Printed: the SQL statements that opening costs (a small in-process phase first, on lines of its
own, at two sizes: statements per opened renewal = the slope; pg_stat_statements when the
extension is there, Django's own count otherwise), the time the burst's requests took, the time
from the first request to the last PaymentIntent localstripe created against the limit's floor
N/limit, the writes the limiter refused (must be 0), the most writes in any 1 s (the limiter's
log and localstripe's own access log) against the limit, and the renewals settled.

Cards: making N localstripe customers costs ~5 requests each through the gateway (about 5
customers/s on this loaded box: 10,000 would take half an hour), so the N lines belong to
--customers customers (default 500), each with one default Visa card, line n owned by customer
((n-1) mod customers)+1. Every renewal is still its own PaymentIntent on its owner's card; what
sharing saves is set-up, not work in the measured phase.

    scripts/with-services .venv/bin/python -m bench.burst [--lines 10000] [--limit 50] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import time
from urllib.parse import urlsplit

from . import common

MB = common.MB


# --- set-up ------------------------------------------------------------------------------------


def _load_shared_lines(*, first: int, last: int, customers: int, package_id: int) -> None:
    """Lines first..last (600 MB left, an enabled 500 MB rule), line n owned by bench customer
    ((n-1) mod customers)+1 (who has a default card)."""
    common.execute(
        """
        INSERT INTO accounts_line (iccid, smdp_address, matching_id, label, status, data_remaining_bytes,
                                   data_used_bytes, overage_bytes, expires_at, usage_notice_level,
                                   expiry_notice_sent, activated_at, created_at, updated_at, owner_id, package_id)
        SELECT '8988' || lpad(g::text, 15, '0'), 'smdp.bench.example', 'BENCH-' || g, '', 'active', %s,
               %s, 0, now() + interval '20 days', 0, false, now(), now(), now(),
               (SELECT id FROM accounts_user u WHERE u.email = 'bench' || ((g - 1) %% %s + 1) || '@example.com'), %s
        FROM generate_series(%s, %s) g
        """,
        [600 * MB, 10 * common.GB - 600 * MB, customers, package_id, first, last],
    )
    common.load_rules(first=first, last=last, package_id=package_id)
    common.execute(
        """
        UPDATE renewals_renewalrule r SET owner_id = l.owner_id FROM accounts_line l
        WHERE l.id = r.line_id AND l.iccid BETWEEN %s AND %s
        """,
        [common.iccid(first), common.iccid(last)],
    )


def _line_ids(first: int, last: int) -> list[int]:
    from accounts.models import Line

    return list(
        Line.objects.filter(iccid__gte=common.iccid(first), iccid__lte=common.iccid(last))
        .order_by("iccid")
        .values_list("pk", flat=True)
    )


# --- SQL counts ----------------------------------------------------------------------------------


def _pg_stat_statements() -> bool:
    try:
        common.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        common.scalar("SELECT count(*) FROM pg_stat_statements")
        return True
    except Exception:  # not preloaded (scripts/with-services preloads it when installed)
        return False


def _reset_statements() -> None:
    common.execute("SELECT pg_stat_statements_reset()")


def _statements(*, exclude_bench: bool = True) -> int:
    # The bench's own reads of pg_stat_statements are not the application's statements.
    return int(
        common.scalar(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query NOT ILIKE %s AND query NOT ILIKE %s",
            ["%pg_stat_statements%", "%VACUUM%"],
        )
    )


def _top_statements(limit: int = 8) -> list[tuple[int, float, str]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT calls, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements
            WHERE query NOT ILIKE '%%pg_stat_statements%%' ORDER BY total_exec_time DESC LIMIT %s
            """,
            [limit],
        )
        return [(int(c), float(t), q) for c, t, q in cursor.fetchall()]


def opening_cost(*, sizes: tuple[int, int], first: int, package_id: int, with_pgss: bool) -> dict:
    """Open `size` renewals in one evaluate_triggers call for each size (lines of their own, no
    card, left `due`: no worker sees them): statements and seconds; the slope is the cost per
    opened renewal, the intercept the fixed cost."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from renewals.models import Renewal, RetryPolicy
    from renewals.services import triggers

    RetryPolicy.current()  # its row is created on first use: not part of opening's cost
    figures: dict = {}
    for size in sizes:
        last = first + size - 1
        common.load_lines(first=first, last=last, package_id=package_id, data_remaining_bytes=400 * MB)
        common.load_rules(first=first, last=last, package_id=package_id)
        common.vacuum_analyze("accounts_line", "renewals_renewalrule", "renewals_renewal")
        ids = _line_ids(first, last)
        if with_pgss:
            _reset_statements()
        with CaptureQueriesContext(connection) as queries, common.timed() as t:
            opened = triggers.evaluate_triggers(line_ids=ids, now=timezone.now(), dispatch=False)
        seconds = t()
        pgss = _statements() if with_pgss else None
        assert len(opened) == size, (len(opened), size)
        assert Renewal.objects.filter(line_id__in=ids, status=Renewal.Status.DUE).count() == size
        figures[size] = {"django": len(queries), "pgss": pgss, "seconds": seconds}
        print(
            f"   opening {size:>6,} renewals in one call: {len(queries):,} statements (Django)"
            + (f", {pgss:,} (pg_stat_statements)" if pgss is not None else "")
            + f", {seconds * 1000:,.0f} ms"
        )
        first = last + 1
    small, large = sizes
    per = (figures[large]["django"] - figures[small]["django"]) / (large - small)
    fixed = figures[small]["django"] - per * small
    figures["per_renewal"] = per
    figures["fixed"] = fixed
    print(f"   opening cost: {per:.2f} statements per opened renewal + {fixed:.0f} fixed")
    return figures


# --- the burst -----------------------------------------------------------------------------------


def _send_batches(*, base_url: str, secret: str, iccids: list[str], batch: int, tag: str) -> tuple[float, list]:
    """The partner's usage for every line, signed batches of `batch` records back to back over one
    connection; (first request sent at, per-request (status, seconds, accepted))."""
    from partner import signature as partner_signature

    parts = urlsplit(base_url)
    end = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = end - dt.timedelta(minutes=5)
    stamp = {"start": start.isoformat().replace("+00:00", "Z"), "end": end.isoformat().replace("+00:00", "Z")}
    bodies = [
        json.dumps(
            {
                "records": [
                    {"id": f"{tag}-{i + k}", "iccid": iccid, "bytes": 200 * MB, **stamp}
                    for k, iccid in enumerate(chunk)
                ]
            }
        ).encode()
        for i, chunk in ((i, iccids[i : i + batch]) for i in range(0, len(iccids), batch))
    ]
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    results = []
    began = time.time()
    for body in bodies:
        header = partner_signature.sign(secret=secret, body=body, now=dt.datetime.now(dt.UTC))
        sent = time.perf_counter()
        conn.request(
            "POST",
            "/api/partner/usage",
            body=body,
            headers={"Content-Type": "application/json", partner_signature.HEADER: header},
        )
        response = conn.getresponse()
        payload = response.read()
        accepted = json.loads(payload).get("accepted", 0) if response.status == 200 else 0
        results.append((response.status, time.perf_counter() - sent, accepted))
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    conn.close()
    return began, results


def _intent_creations(*, since: float, until: float) -> list[float]:
    """When each POST /v1/payment_intents reached localstripe (its own access log), in [since, until]."""
    return common.processor_write_times(since=since, until=until, path_prefix="POST /v1/payment_intents ")


def _most_in_one_second(stamps: list[float]) -> int:
    """The most events in any sliding 1-second window (not only whole seconds)."""
    best, lo = 0, 0
    for hi, t in enumerate(stamps):
        while stamps[lo] <= t - 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def run(
    *,
    lines: int = 10_000,
    limit: int = 50,
    customers: int = 500,
    concurrency: int = 4,
    batch: int = 1000,
    opening_sizes: tuple[int, int] | None = None,
    usage_notices: bool = False,
) -> dict:
    from django.conf import settings
    from django.test import override_settings
    from django.utils import timezone

    from payments import processor_limit
    from payments.models import Charge
    from renewals.models import Renewal

    customers = min(customers, lines)
    with_pgss = _pg_stat_statements()
    package = common.bench_package()

    # 1. What opening costs, measured before the burst on lines of its own.
    sizes = opening_sizes or (max(2, lines // 100), max(4, lines // 10))
    opening = opening_cost(sizes=sizes, first=lines + 1, package_id=package.pk, with_pgss=with_pgss)

    # 2. The burst's lines and customers (set-up: the limiter must not slow it).
    with common.timed() as t, override_settings(STRIPE_WRITE_RATE_LIMIT=100_000):
        common.customers_with_cards(count=customers, data_remaining_bytes=600 * MB)
    print(f"   {customers:,} customers with a default Visa card in localstripe: {t():.1f} s")
    if lines > customers:
        _load_shared_lines(first=customers + 1, last=lines, customers=customers, package_id=package.pk)
    line_ids = _line_ids(1, lines)
    assert len(line_ids) == lines, len(line_ids)
    if not usage_notices:
        # The lines are 94 % used: the burst's usage would also owe each customer a "90 % used"
        # email, and the worker would send 10,000 of those before most charges (bench/notes/burst.md).
        common.execute("UPDATE accounts_line SET usage_notice_level = 90 WHERE id = ANY(%s)", [line_ids])
    common.vacuum_analyze("accounts_line", "renewals_renewalrule", "renewals_renewal", "accounts_usagerecord")
    print(f"   {lines:,} lines (600 MB left, rule at 500 MB), line n owned by customer ((n-1) mod {customers})+1")

    # 3. The burst: the partner's usage takes every line below its threshold.
    iccids = [common.iccid(n) for n in range(1, lines + 1)]
    with (
        override_settings(STRIPE_WRITE_RATE_LIMIT=limit),
        common.gunicorn(workers=1, log_name="burst-gunicorn") as base_url,
        common.celery_worker(
            concurrency=concurrency, log_name="burst-worker", env={"STRIPE_WRITE_RATE_LIMIT": str(limit)}
        ),
    ):
        processor_limit.reset_write_stats()
        if with_pgss:
            _reset_statements()
        started_at = timezone.now()
        began, requests = _send_batches(
            base_url=base_url,
            secret=settings.PARTNER_USAGE_SECRET,
            iccids=iccids,
            batch=batch,
            tag=f"burst-{time.time():.0f}",
        )
        requests_done = time.time()
        statuses = {status for status, _s, _a in requests}
        accepted = sum(a for _st, _s, a in requests)
        opened = Renewal.objects.filter(line_id__in=line_ids, created_at__gte=started_at).count()
        print(
            f"   burst: {len(requests)} requests of <= {batch} records, statuses {sorted(statuses)}, {accepted:,} accepted, "
            f"{opened:,} renewals opened, in {requests_done - began:.2f} s "
            f"(slowest request {max(s for _st, s, _a in requests):.2f} s, each opens and enqueues its lines' renewals)"
        )
        pgss_opening = None
        if with_pgss:
            inserts = common.scalar(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query ILIKE 'INSERT INTO \"renewals_renewal\"%%'"
            )
            pgss_opening = int(inserts)
            print(f"   INSERTs into renewals_renewal during the burst's requests: {pgss_opening:,} statements")

        def settled() -> int:
            return Renewal.objects.filter(
                line_id__in=line_ids, status=Renewal.Status.SUCCEEDED, completed_at__gte=started_at
            ).count()

        # Bounded, but long enough for a loaded machine's worker (a few renewals/s) to finish.
        done = common.wait_until(lambda: settled() == lines, timeout=300 + lines / 2, interval=1.0)
        stats = processor_limit.write_stats()
    finished = time.time()
    succeeded = settled()
    charges = list(
        Charge.objects.filter(renewal__line_id__in=line_ids, sent_at__gte=started_at).values_list(
            "sent_at", "settled_at", "status"
        )
    )
    created = _intent_creations(since=began, until=finished)
    last_sent = max(c[0].timestamp() for c in charges) if charges else finished
    last_pi = created[-1] if created else last_sent
    floor = lines / limit
    margin = float(settings.STRIPE_RATE_LIMIT_MARGIN_SECONDS)
    to_last = last_pi - began
    ratio = to_last / floor
    peak_log = _most_in_one_second(created)
    per_second = common.processor_writes_per_second(since=began, until=finished)
    print(
        f"   charges: {len(charges):,} attempts, {succeeded:,}/{lines:,} renewals succeeded (all: {done}); "
        f"{len(created):,} POST /v1/payment_intents in localstripe's log"
    )
    print(
        f"   first request -> last PaymentIntent created: {to_last:.1f} s; floor {lines:,}/{limit} = {floor:.1f} s; "
        f"ratio {ratio:.3f} (the limiter's window is 1 s + {margin:g} s margin, so its own best is {1 + margin:.2f})"
    )
    print(
        f"   processor writes, limit {limit}/s: {stats.writes:,} sent, {stats.waited:,} waited for a slot, "
        f"{stats.refused} refused; most in any 1 s: {stats.max_window} (limiter's log), {peak_log} (localstripe's log, "
        f"sliding), {max(per_second.values(), default=0)} (localstripe's log, whole seconds)"
    )
    if with_pgss:
        print("   pg_stat_statements, burst and charges, top by total time (calls, total ms, statement):")
        for calls, total, query in _top_statements():
            print(f"     {calls:>8,} {total:>10,.0f} ms  {query[:150]}")
    common.goal(
        "burst: time to last PaymentIntent vs floor",
        ratio,
        target=1.2,
        at_least=False,
        note=f"floor {floor:.0f} s at {limit}/s; limiter margin {margin:g} s",
    )
    common.goal("burst: writes refused", stats.refused, target=0, at_least=False)
    common.goal("burst: most writes in 1 s vs limit", max(stats.max_window, peak_log), target=limit, at_least=False)
    common.goal("burst: renewals settled", succeeded, target=lines, at_least=True)
    return {
        "lines": lines,
        "limit": limit,
        "statuses": statuses,
        "accepted": accepted,
        "opened": opened,
        "requests_seconds": requests_done - began,
        "to_last_intent": to_last,
        "floor": floor,
        "ratio": ratio,
        "refused": stats.refused,
        "max_window": stats.max_window,
        "log_peak": peak_log,
        "intents": len(created),
        "succeeded": succeeded,
        "opening": opening,
        "renewal_inserts": pgss_opening,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=50, help="processor write limit (writes/s)")
    parser.add_argument("--customers", type=int, default=500, help="customers (cards) the lines share")
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes")
    parser.add_argument("--batch", type=int, default=1000, help="records per usage request (MAX_RECORDS: 1000)")
    parser.add_argument(
        "--usage-notices",
        action="store_true",
        help="let the burst also owe every customer the '90%% used' email (sent by the same worker)",
    )
    args = parser.parse_args(argv)
    common.setup_django()
    common.log_to_file("burst")
    common.header(
        f"bench 6: a burst of {args.lines:,} lines crossing their threshold, limit {args.limit}/s, "
        f"{args.concurrency} worker processes"
    )
    run(
        lines=args.lines,
        limit=args.limit,
        customers=args.customers,
        concurrency=args.concurrency,
        batch=args.batch,
        usage_notices=args.usage_notices,
    )


if __name__ == "__main__":
    main()
