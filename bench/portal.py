"""Bench 5, portal: 50 concurrent logged-in customers (locust, headless), each waiting 1 s between
pages, browsing the account, line and history pages against gunicorn with 100,000 customers (each
with a line) in the database; the browsing customers also have 20 charges each in their history.

    scripts/with-services .venv/bin/python -m bench.portal [--customers 100000 --users 50 --seconds 60]
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys

from . import common


def _sessions(count: int) -> list[dict]:
    """Logged-in sessions (Django's own session store) for customers bench1..bench<count>."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.models import Line, User

    out = []
    for user in User.objects.filter(email__in=[f"bench{n}@example.com" for n in range(1, count + 1)]):
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        line_id = Line.objects.filter(owner=user).values_list("pk", flat=True).first()
        out.append({"cookie": session.session_key, "line_id": line_id})
    return out


def _load_history(*, customers: int, per_customer: int, package_id: int) -> int:
    return common.execute(
        """
        INSERT INTO payments_charge (attempt, purpose, amount_minor, currency, status, idempotency_key, payment_intent_id,
                                     payment_method_id, payment_method_summary, failure_code, failure_message, decline_kind,
                                     refunded_minor, created_at, updated_at, sent_at, settled_at, line_id, package_id,
                                     renewal_id, user_id)
        SELECT NULL, 'purchase', 9800, 'CNY', 'succeeded', 'bench-' || l.id || '-' || k, 'pi_bench_' || l.id || '_' || k,
               'pm_bench', 'Visa •••• 4242', '', '', '', 0, now() - make_interval(days => k), now(), now(), now(),
               l.id, %s, NULL, l.owner_id
        FROM accounts_line l CROSS JOIN generate_series(1, %s) k
        WHERE l.iccid BETWEEN %s AND %s
        """,
        [package_id, per_customer, common.iccid(1), common.iccid(customers)],
    )


def run(*, customers: int = 100_000, users: int = 50, seconds: int = 60, web_workers: int = 4, browsing: int | None = None) -> dict:
    browsing = browsing or users
    package = common.bench_package()
    with common.timed() as t:
        common.load_users(first=1, last=customers)
        common.load_lines(first=1, last=customers, package_id=package.pk, with_owners=True)
        _load_history(customers=browsing, per_customer=20, package_id=package.pk)
        common.vacuum_analyze("accounts_user", "accounts_line", "payments_charge", "account_emailaddress")
    print(f"   {customers:,} customers with a line, {browsing} of them with 20 charges: loaded in {t():.1f} s")
    sessions = common.OUT_DIR / "portal-sessions.json"
    sessions.write_text(json.dumps(_sessions(browsing)))
    prefix = common.OUT_DIR / "portal"
    with common.gunicorn(workers=web_workers, log_name="portal-gunicorn") as base_url:
        subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(common.ROOT / "bench" / "locustfile.py"), "--headless",
             "-u", str(users), "-r", str(max(users // 5, 1)), "-t", f"{seconds}s", "--host", base_url,
             "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
            env={**common.child_env(BENCH_PORTAL_SESSIONS=str(sessions))}, check=False,
            stdout=open(common.OUT_DIR / "portal-locust.log", "wb"), stderr=subprocess.STDOUT,
        )
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
    results = {}
    for row in rows:
        name = row["Name"]
        results[name] = {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                         "p50": float(row["50%"]), "p95": float(row["95%"]), "p99": float(row["99%"])}
        print(f"   {name:>10}: {row['Request Count']:>6} requests, {row['Failure Count']} failures, "
              f"p50 {row['50%']} ms, p95 {row['95%']} ms, p99 {row['99%']} ms")
    total = results.get("Aggregated", {})
    if total:
        print(f"   target p95 < 100 ms and zero errors: "
              f"{'met' if total['p95'] < 100 and total['failures'] == 0 else 'MISSED'} "
              f"(p95 {total['p95']:.0f} ms, {total['failures']} failures; {web_workers} gunicorn sync workers)")
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--web-workers", type=int, default=4)
    args = parser.parse_args(argv)
    common.setup_django()
    common.log_to_file("portal")
    common.header(f"bench 5: portal, {args.users} locust users against gunicorn, {args.customers:,} customers")
    run(customers=args.customers, users=args.users, seconds=args.seconds, web_workers=args.web_workers)


if __name__ == "__main__":
    main()
