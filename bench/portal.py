"""Bench 5, portal: logged-in customers (locust, headless, one FastHttpUser process) browsing the
account, line and transaction history pages against gunicorn, with 100,000 customers (each with a
line) in the database; the browsing customers also have 20 charges each in their history and an auto-renewal rule.

Two phases on the same data and the same gunicorn: 50 users, then 200 users, 60 s each. A user is
one customer who loads a page, waits 1 s (think time), loads the next: account, line, account, line,
history, and again (bench/locustfile.py). 1 s is harsher than a person (who reads for several
seconds), so one simulated user stands for several real ones; it is the think time the bench always
had. Figures are taken after every user of the phase has started (locust --reset-stats).

Per phase it prints p50/p95/p99 overall and per page, errors, requests/s, the CPU used by locust,
by gunicorn (master and workers) and by the whole machine (PostgreSQL is most of the rest), and
the SQL the phase sent (pg_stat_statements: statements per page view, time per page view, the top
statements). `--py-spy` also samples the gunicorn workers during each phase and prints the
functions that take the most time (var/bench/portal-pyspy-<users>.txt).

    scripts/with-services .venv/bin/python -m bench.portal [--customers 100000 --users 50 200 --duration 60]
        [--web-workers 4 --threads 1] [--py-spy]

gunicorn runs 4 sync workers, the model this bench always measured (production runs gthread, 2 x 4:
docs/portal-performance.md compares them); --web-workers and --threads change it (threads > 1 is
gthread). Database connections are kept between requests, as production keeps them."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter

from . import common

PAGES = ("account", "line", "history")
# One pass of the locustfile's sequence: account, line, account, line, history.
VIEWS_PER_ROUND = 5


def _sessions(count: int) -> list[dict]:
    """Logged-in sessions (the session store of the settings) for customers bench1..bench<count>."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    from accounts.models import Line, User

    store = import_module(settings.SESSION_ENGINE).SessionStore
    out = []
    for user in User.objects.filter(email__in=[f"bench{n}@example.com" for n in range(1, count + 1)]):
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
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
    """Per page and "Aggregated": requests, failures, p50/p95/p99 in ms, requests/s. Read from
    locust's final JSON (written as it quits), not its CSV, which it rewrites every second."""
    merged: dict = {"name": "Aggregated", "num_requests": 0, "num_failures": 0, "response_times": {}}
    first, last = None, None
    for entry in entries:
        merged["num_requests"] += entry["num_requests"]
        merged["num_failures"] += entry["num_failures"]
        for ms, count in entry["response_times"].items():
            merged["response_times"][ms] = merged["response_times"].get(ms, 0) + count
        if entry.get("start_time"):
            first = min(first or entry["start_time"], entry["start_time"])
            last = max(last or entry["last_request_timestamp"], entry["last_request_timestamp"] or 0)
    span = (last - first) if first and last else 0
    results = {}
    for entry in [*entries, merged]:
        times = entry["response_times"]
        results[entry["name"]] = {
            "requests": entry["num_requests"],
            "failures": entry["num_failures"],
            "p50": _percentile(times, 0.50),
            "p95": _percentile(times, 0.95),
            "p99": _percentile(times, 0.99),
            "rps": entry["num_requests"] / span if span > 0 else 0.0,
        }
    return results


# --- what each side costs ---------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (gunicorn's master and workers)."""
    import psutil

    total = 0.0
    try:
        parent = psutil.Process(pid)
        for process in [parent, *parent.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def _machine_cpu_seconds() -> float:
    """Busy CPU of the whole machine (every core, every process) from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _statements_reset() -> bool:
    """Clears pg_stat_statements when scripts/with-services preloaded it; False when it did not."""
    try:
        common.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        common.execute("SELECT pg_stat_statements_reset()")
        return True
    except Exception:  # not preloaded: the bench still runs, without the SQL figures
        from django.db import connection

        connection.rollback() if connection.in_atomic_block else None
        return False


def _statements(top: int = 8) -> list[tuple]:
    """(calls, total ms, mean ms, query) of the web's statements, most total time first: the bench's
    own session and the extension's bookkeeping are left out."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT calls, total_exec_time, mean_exec_time, query
            FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND query NOT ILIKE '%%pg_stat_statements%%'
            ORDER BY total_exec_time DESC
            """
        )
        rows = cursor.fetchall()
    return rows if top <= 0 else rows[:top]


def _py_spy(gunicorn_pid: int, out: str, seconds: int):
    """py-spy sampling the gunicorn workers (--subprocesses) for `seconds`, raw collapsed stacks;
    --gil: only samples holding the GIL, i.e. the workers' CPU (a worker waiting for PostgreSQL's
    answer is not counted: pg_stat_statements says what the SQL cost)."""
    spy = common.ROOT / ".venv" / "bin" / "py-spy"
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(gunicorn_pid),
            "--subprocesses",
            "--format",
            "raw",
            "--rate",
            "200",
            "--gil",
            "--duration",
            str(seconds),
            "--nonblocking",
            "--output",
            out,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def py_spy_summary(path: str, top: int = 25) -> list[str]:
    """The functions that take the most worker time while a request is handled (below gunicorn's
    handle_request; a worker waiting for the next request is idle, not cost): inclusive share (in
    the stack at all) and self share (on top of it), from py-spy's collapsed stacks."""
    inclusive: Counter = Counter()
    own: Counter = Counter()
    total = 0
    with open(path) as f:
        for row in f:
            stack, _, count_text = row.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            start = next(
                (
                    i
                    for i, frame in enumerate(frames)
                    if frame.startswith(("handle_request ", "SyncWorker.handle_request", "ThreadWorker.handle_request"))
                ),
                None,
            )
            if start is None or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            names = [_frame_name(frame) for frame in frames[start + 1 :]] or ["(gunicorn itself)"]
            for name in set(names):
                inclusive[name] += count
            own[names[-1]] += count
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples in request handling"]
    lines += ["inclusive:"] + [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["self:"] + [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return lines


def _frame_name(frame: str) -> str:
    """'func (path/to/module.py:12)' -> 'func (to/module.py)'."""
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{function} ({'/'.join(path.split('/')[-2:])})"


def _gunicorn_master() -> int:
    """The pid of the gunicorn master common.gunicorn started (our child process)."""
    import psutil

    for child in psutil.Process().children():
        if "gunicorn" in " ".join(child.cmdline()):
            return child.pid
    raise RuntimeError("no gunicorn child process")


# --- one phase ------------------------------------------------------------------------------


def _phase(*, base_url: str, gunicorn_pid: int, users: int, seconds: int, rounds: int, sessions, spy: bool) -> dict:
    prefix = common.OUT_DIR / f"portal-{users}"
    json_path = f"{prefix}.json"
    if os.path.exists(json_path):
        os.unlink(json_path)
    spawn_rate = max(users // 5, 1)
    ramp = 0 if rounds else users / spawn_rate
    command = [
        sys.executable, "-m", "locust", "-f", str(common.ROOT / "bench" / "locustfile.py"), "--headless",
        "-u", str(users), "-r", str(spawn_rate), "-t", f"{seconds + ramp:.0f}s",
        "--host", base_url, "--json-file", str(prefix), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    if not rounds:
        command.append("--reset-stats")  # the figures start once every user browses
    with open(common.OUT_DIR / f"portal-locust-{users}.log", "wb") as log:
        process = subprocess.Popen(
            command,
            env=common.child_env(
                BENCH_PORTAL_SESSIONS=str(sessions), BENCH_PORTAL_ROUNDS=str(rounds), BENCH_PORTAL_USERS=str(users)
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # The CPU, the SQL and the profile are counted over the window locust's figures cover:
        # from the moment every user has started (--reset-stats) to the end.
        deadline = time.monotonic() + ramp
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        have_sql = _statements_reset()
        spy_process = _py_spy(gunicorn_pid, f"{prefix}-pyspy.raw", seconds) if spy else None
        before_web, before_machine = _cpu_seconds(gunicorn_pid), _machine_cpu_seconds()
        before_locust = locust_now = _cpu_seconds(process.pid)
        started = time.monotonic()
        while process.poll() is None:
            locust_now = max(locust_now, _cpu_seconds(process.pid))  # its last reading before it quits
            time.sleep(0.5)
    wall = time.monotonic() - started
    web = _cpu_seconds(gunicorn_pid) - before_web
    machine = _machine_cpu_seconds() - before_machine
    locust = locust_now - before_locust
    results = _results(json.loads(open(json_path).read()))
    total = results["Aggregated"]
    results["cpu"] = {"wall": wall, "locust": locust, "gunicorn": web, "machine": machine}
    results["sql"] = _statements(top=0) if have_sql else []
    if spy_process is not None:
        spy_process.wait()
        summary = py_spy_summary(f"{prefix}-pyspy.raw")
        (common.OUT_DIR / f"portal-pyspy-{users}.txt").write_text("\n".join(summary) + "\n")
        results["py_spy"] = summary

    print(f"-- {users} users: {total['requests']:,} page views in the measured window, {total['rps']:.1f} requests/s")
    for name in (*PAGES, "Aggregated"):
        row = results.get(name)
        if row:
            print(
                f"   {name:>10}: {row['requests']:>6} requests, {row['failures']} errors, "
                f"p50 {row['p50']} ms, p95 {row['p95']} ms, p99 {row['p99']} ms"
            )
    cores = os.cpu_count() or 1
    views = max(total["requests"], 1)
    print(
        f"   CPU over the {wall:.0f} s measured ({cores} cores = {cores * wall:.0f} core-s): "
        f"gunicorn {web:.1f} s ({100 * web / wall:.0f}% of a core, {1000 * web / views:.1f} ms per page view), "
        f"locust {locust:.1f} s ({100 * locust / wall:.0f}% of a core, {1000 * locust / views:.1f} ms per request), "
        f"whole machine {machine:.1f} s ({100 * machine / (cores * wall):.0f}% of all cores: the rest is "
        f"PostgreSQL, Redis and the neighbours)"
    )
    if results["sql"]:
        calls = sum(row[0] for row in results["sql"])
        ms = sum(row[1] for row in results["sql"])
        print(f"   SQL: {calls:,} statements, {ms:,.0f} ms in PostgreSQL (whole phase); "
              f"~{calls / views:.1f} statements and {ms / views:.2f} ms per page view")  # fmt: skip
        for calls_, total_ms, mean_ms, query in results["sql"][:6]:
            print(f"     {calls_:>7} calls {total_ms:>9.0f} ms {mean_ms:6.3f} ms/call  {' '.join(query.split())[:110]}")
    if spy and results.get("py_spy"):
        print(f"   py-spy (worker CPU while handling requests; full list in var/bench/portal-pyspy-{users}.txt):")
        for row in results["py_spy"][1:16]:
            print(f"     {row}")
    return results


def run(
    *,
    customers: int = 100_000,
    users: tuple[int, ...] = (50, 200),
    seconds: int = 60,
    web_workers: int = 4,
    threads: int = 1,
    browsing: int | None = None,
    rounds: int = 0,
    spy: bool = False,
) -> dict:
    """Loads the data once, starts gunicorn once, and runs one locust phase per entry of `users`.
    `rounds`: each user browses the whole sequence that many times, then the phase ends (`seconds`
    is then only a safety net); 0 browses for `seconds`. Returns {users: results}."""
    browsing = browsing or max(users)
    package = common.bench_package()
    with common.timed() as t:
        common.load_users(first=1, last=customers)
        common.load_lines(first=1, last=customers, package_id=package.pk, with_owners=True)
        _load_history(customers=browsing, per_customer=20, package_id=package.pk)
        # Browsing customers have an auto-renewal rule: the pages then read rules and methods too.
        common.load_rules(first=1, last=browsing, package_id=package.pk)
        common.vacuum_analyze("accounts_user", "accounts_line", "payments_charge", "account_emailaddress")
    print(
        f"   {customers:,} customers with a line, {browsing} of them with 20 charges and a rule: loaded in {t():.1f} s"
    )
    sessions = common.OUT_DIR / "portal-sessions.json"
    sessions.write_text(json.dumps(_sessions(browsing)))
    model = (
        f"{web_workers} gunicorn {'gthread workers x ' + str(threads) + ' threads' if threads > 1 else 'sync workers'}"
    )
    print(f"   {model}; each user waits 1 s after each page")
    out: dict = {}
    # gunicorn as production runs it: connections kept between requests (settings/production.py).
    kept = os.environ.get("CONN_MAX_AGE")
    os.environ["CONN_MAX_AGE"] = kept or "60"
    try:
        with common.gunicorn(workers=web_workers, threads=threads, log_name="portal-gunicorn") as base_url:
            pid = _gunicorn_master()
            if not rounds:
                print("   warm-up (one round per user, not counted):")
                _phase(
                    base_url=base_url,
                    gunicorn_pid=pid,
                    users=min(users),
                    seconds=seconds,
                    rounds=1,
                    sessions=sessions,
                    spy=False,
                )
            for count in users:
                out[count] = _phase(
                    base_url=base_url,
                    gunicorn_pid=pid,
                    users=count,
                    seconds=seconds,
                    rounds=rounds,
                    sessions=sessions,
                    spy=spy,
                )
    finally:
        if kept is None:
            os.environ.pop("CONN_MAX_AGE", None)
    return out


def report_goals(out: dict) -> None:
    """The three goals of issue 15 for the portal, from the 50- and 200-user phases."""
    low, high = out.get(50), out.get(200)
    errors = sum(phase["Aggregated"]["failures"] for phase in out.values())
    if low and high and low["Aggregated"]["p95"] and high["Aggregated"]["p95"]:
        print(
            f"   p95 at 200 users / p95 at 50 users (same run): {high['Aggregated']['p95'] / low['Aggregated']['p95']:.2f}"
        )
    if low:
        common.goal("portal p95 at 50 users", low["Aggregated"]["p95"] or 0.0, target=50, at_least=False, unit=" ms")
    if high:
        common.goal("portal p95 at 200 users", high["Aggregated"]["p95"] or 0.0, target=100, at_least=False, unit=" ms")
    common.goal("portal errors", errors, target=0, at_least=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--users", type=int, nargs="+", default=[50, 200], help="one phase per count (default 50 200)")
    parser.add_argument("--duration", "--seconds", type=int, default=60, dest="duration", help="seconds per phase")
    parser.add_argument("--web-workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--py-spy", action="store_true", help="sample the gunicorn workers with py-spy in each phase")
    args = parser.parse_args(argv)
    workers, threads = default_worker_model()
    workers = args.web_workers or workers
    threads = args.threads or threads
    common.setup_django()
    common.log_to_file("portal")
    common.header(
        f"bench 5: portal, {' then '.join(map(str, args.users))} locust users against gunicorn, {args.customers:,} customers"
    )
    out = run(
        customers=args.customers,
        users=tuple(args.users),
        seconds=args.duration,
        web_workers=workers,
        threads=threads,
        spy=args.py_spy,
    )
    report_goals(out)


def default_worker_model() -> tuple[int, int]:
    """The bench's default workers and threads: 4 sync workers on 2 cores, as every earlier run of
    this bench, so figures compare across sessions (production's gthread 2 x 4: --web-workers 2
    --threads 4)."""
    return 4, 1


if __name__ == "__main__":
    main()
