"""Bench 5, portal: 50 concurrent logged-in customers (locust, headless), each waiting 1 s between
pages, browsing the account, line and history pages against gunicorn with 100,000 customers (each
with a line) in the database; the browsing customers also have 20 charges each in their history.

    scripts/with-services .venv/bin/python -m bench.portal [--customers 100000 --users 50 --seconds 60]
"""

from __future__ import annotations

import argparse
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


def _percentile(response_times: dict, fraction: float) -> float | None:
    """A percentile of locust's response-time histogram ({rounded ms: count})."""
    total = sum(response_times.values())
    if not total:
        return None
    seen = 0
    for ms in sorted(response_times, key=float):
        seen += response_times[ms]
        if seen >= fraction * total:
            return float(ms)
    return None


def _results(entries: list[dict]) -> dict:
    """Per page and "Aggregated": requests, failures, p50/p95/p99 in ms. Read from locust's final
    JSON (written as it quits), not its CSV, which it rewrites every second and can leave stale."""
    merged: dict = {"name": "Aggregated", "num_requests": 0, "num_failures": 0, "response_times": {}}
    for entry in entries:
        merged["num_requests"] += entry["num_requests"]
        merged["num_failures"] += entry["num_failures"]
        for ms, count in entry["response_times"].items():
            merged["response_times"][ms] = merged["response_times"].get(ms, 0) + count
    results = {}
    for entry in [*entries, merged]:
        times = entry["response_times"]
        results[entry["name"]] = {
            "requests": entry["num_requests"],
            "failures": entry["num_failures"],
            "p50": _percentile(times, 0.50),
            "p95": _percentile(times, 0.95),
            "p99": _percentile(times, 0.99),
        }
    return results


def run(
    *,
    customers: int = 100_000,
    users: int = 50,
    seconds: int = 60,
    web_workers: int = 4,
    browsing: int | None = None,
    rounds: int = 0,
) -> dict:
    """`rounds`: each user browses the whole sequence that many times, then the run ends (`seconds`
    is then only a safety net); 0 browses for `seconds`."""
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
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(common.ROOT / "bench" / "locustfile.py"),
                "--headless",
                "-u",
                str(users),
                "-r",
                str(max(users // 5, 1)),
                "-t",
                f"{seconds}s",
                "--host",
                base_url,
                "--json-file",
                str(prefix),
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            env={
                **common.child_env(
                    BENCH_PORTAL_SESSIONS=str(sessions), BENCH_PORTAL_ROUNDS=str(rounds), BENCH_PORTAL_USERS=str(users)
                )
            },
            check=False,
            stdout=open(common.OUT_DIR / "portal-locust.log", "wb"),
            stderr=subprocess.STDOUT,
        )
    results = _results(json.loads(open(f"{prefix}.json").read()))
    for name, row in results.items():
        print(
            f"   {name:>10}: {row['requests']:>6} requests, {row['failures']} failures, "
            f"p50 {row['p50']} ms, p95 {row['p95']} ms, p99 {row['p99']} ms"
        )
    total = results.get("Aggregated", {})
    if total and total["p95"] is not None:
        print(
            f"   target p95 < 100 ms and zero errors: "
            f"{'met' if total['p95'] < 100 and total['failures'] == 0 else 'MISSED'} "
            f"(p95 {total['p95']:.0f} ms, {total['failures']} failures; {web_workers} gunicorn sync workers)"
        )
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
