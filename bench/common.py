"""What every bench shares: Django set up against the services of scripts/with-services, bulk
loading of lines, rules and renewals with INSERT … SELECT generate_series (a million rows in
seconds, not an ORM loop), timers and a one-line description of the machine and its load.

Benches print their figures; they assert nothing about time. tests/bench/test_smoke.py runs each
at tiny sizes so that they keep working."""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "var" / "bench"
GB = 1024**3
MB = 1024**2


def setup_django(*, migrate: bool = True) -> None:
    """Django on the test settings (captured email/SMS, real PostgreSQL/Redis/localstripe), the
    schema migrated, and the app's INFO log lines sent to var/bench/<bench>.log: they are part of
    the real cost of a pass, but 10,000 of them would drown the figures."""
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as they come, also through `tee`
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "esimsite.settings.test")
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("bench: needs the real services; run it under scripts/with-services (or `make bench`)")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def log_to_file(name: str) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.log"
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    return path


def machine() -> str:
    """Cores, memory and the load average when the figures were taken: this machine is shared."""
    cores = os.cpu_count()
    try:
        mem_kb = next(int(row.split()[1]) for row in open("/proc/meminfo") if row.startswith("MemTotal"))
        mem = f"{mem_kb / 1024 / 1024:.0f} GB"
    except (OSError, StopIteration):
        mem = "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cores} cores, {mem} RAM, load average {load}"


def header(title: str) -> None:
    print(f"== {title}")
    print(f"   machine: {machine()}")
    print(f"   time: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")


def goal(name: str, figure: float, *, target: float, at_least: bool, unit: str = "", note: str = "") -> bool:
    """Print one figure against its goal (issue 15) on a line `make bench` collects into its summary:

        GOAL <name>: <figure><unit> (goal >= <target><unit>) met|MISSED[ — note]

    Returns whether it was met. Benches never assert on time: a missed goal is a printed fact."""
    met = figure >= target if at_least else figure <= target
    sign = ">=" if at_least else "<="
    tail = f" - {note}" if note else ""
    print(f"GOAL {name}: {figure:,.2f}{unit} (goal {sign} {target:,.2f}{unit}) {'met' if met else 'MISSED'}{tail}")
    return met


@contextmanager
def timed():
    """with timed() as t: ...; t() -> seconds."""
    start = time.perf_counter()
    end = None

    def elapsed() -> float:
        return (end if end is not None else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()


def median(values) -> float:
    return statistics.median(values)


def percentile(values, p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


# --- bulk loading ----------------------------------------------------------------------------


def execute(sql: str, params=None) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def scalar(sql: str, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def bench_package(*, price_minor: int = 9800, currency: str = "CNY"):
    from accounts.models import Package

    package, _ = Package.objects.get_or_create(
        name="Bench 10 GB / 30 days",
        defaults={
            "data_allowance_bytes": 10 * GB,
            "validity_days": 30,
            "price_minor": price_minor,
            "currency": currency,
        },
    )
    return package


def iccid(n: int) -> str:
    """The ICCID of bench line number n (1-based), as load_lines writes it."""
    return f"8988{n:015d}"


def load_users(*, first: int, last: int) -> int:
    """Customers bench{n}@example.com for n in first..last, with a verified primary email (allauth
    lets them log in) and the password 'bench-pass' (test settings hash with MD5: cheap to check)."""
    from django.contrib.auth.hashers import make_password

    password = make_password("bench-pass")
    n = execute(
        """
        INSERT INTO accounts_user (password, is_superuser, email, phone, phone_verified, name, language,
                                   time_zone, is_staff, is_active, date_joined)
        SELECT %s, false, 'bench' || g || '@example.com', NULL, false, '', '', 'UTC', false, true, now()
        FROM generate_series(%s, %s) g
        """,
        [password, first, last],
    )
    execute(
        """
        INSERT INTO account_emailaddress (user_id, email, verified, "primary")
        SELECT id, email, true, true FROM accounts_user
        WHERE email LIKE 'bench%%@example.com' AND id NOT IN (SELECT user_id FROM account_emailaddress)
        """
    )
    return n


def load_lines(
    *,
    first: int,
    last: int,
    package_id: int,
    data_remaining_bytes: int = 8 * GB,
    with_owners: bool = False,
    expires_in_days: int = 20,
) -> int:
    """Active lines number first..last (ICCID iccid(n)); owned by bench{n}@example.com when
    with_owners (load_users first)."""
    owner = "(SELECT id FROM accounts_user u WHERE u.email = 'bench' || g || '@example.com')" if with_owners else "NULL"
    return execute(
        f"""
        INSERT INTO accounts_line (iccid, smdp_address, matching_id, label, status, data_remaining_bytes,
                                   data_used_bytes, overage_bytes, expires_at, usage_notice_level,
                                   expiry_notice_sent, activated_at, created_at, updated_at, owner_id, package_id)
        SELECT '8988' || lpad(g::text, 15, '0'), 'smdp.bench.example', 'BENCH-' || g, '', 'active', %s,
               %s, 0, now() + make_interval(days => %s), 0, false, now(), now(), now(), {owner}, %s
        FROM generate_series(%s, %s) g
        """,
        [
            data_remaining_bytes,
            10 * GB - data_remaining_bytes if data_remaining_bytes < 10 * GB else 0,
            expires_in_days,
            package_id,
            first,
            last,
        ],
    )


def load_rules(
    *,
    first: int,
    last: int,
    package_id: int,
    trigger_data_below_mb: int | None = 500,
    trigger_hours_before_expiry: int | None = None,
) -> int:
    """An enabled rule on each of lines first..last."""
    return execute(
        """
        INSERT INTO renewals_renewalrule (enabled, trigger_data_below_mb, trigger_hours_before_expiry,
                                          payment_method_id, overage_policy, overage_cap_mb, max_renewals_per_day,
                                          monthly_spend_cap_minor, created_at, updated_at, line_id, package_id)
        SELECT true, %s, %s, '', 'block', NULL, 2, NULL, now(), now(), l.id, %s
        FROM accounts_line l
        WHERE l.iccid BETWEEN %s AND %s
        """,
        [trigger_data_below_mb, trigger_hours_before_expiry, package_id, iccid(first), iccid(last)],
    )


def load_renewal_history(*, first: int, last: int, package_id: int) -> int:
    """One succeeded renewal, 40 days old, per line first..last: the table a dispatcher must not
    read grows with the business."""
    return execute(
        """
        INSERT INTO renewals_renewal (amount_minor, currency, status, trigger, attempts, next_attempt_at,
                                      last_failure_code, last_failure_message, created_at, updated_at, completed_at,
                                      line_id, package_id, rule_id, claimed_at, failures, line_suspended_at,
                                      overage_billed_bytes, resumed_line, suspend_at)
        SELECT 9800, 'CNY', 'succeeded', 'data', 1, NULL, '', '', now() - interval '40 days',
               now() - interval '40 days', now() - interval '40 days', l.id, %s, r.id,
               now() - interval '40 days', 0, NULL, 0, false, NULL
        FROM accounts_line l LEFT JOIN renewals_renewalrule r ON r.line_id = l.id
        WHERE l.iccid BETWEEN %s AND %s
        """,
        [package_id, iccid(first), iccid(last)],
    )


def load_due_renewals(
    *, line_numbers: list[int], package_id: int, amount_minor: int = 9800, currency: str = "CNY"
) -> int:
    """A `due` renewal, next attempt a minute ago, for each given line number."""
    return execute(
        """
        INSERT INTO renewals_renewal (amount_minor, currency, status, trigger, attempts, next_attempt_at,
                                      last_failure_code, last_failure_message, created_at, updated_at, completed_at,
                                      line_id, package_id, rule_id, claimed_at, failures, line_suspended_at,
                                      overage_billed_bytes, resumed_line, suspend_at)
        SELECT %s, %s, 'due', 'data', 0, now() - interval '1 minute', '', '', now(), now(), NULL,
               l.id, %s, r.id, NULL, 0, NULL, 0, false, NULL
        FROM accounts_line l LEFT JOIN renewals_renewalrule r ON r.line_id = l.id
        WHERE l.iccid = ANY(%s)
        """,
        [amount_minor, currency, package_id, [iccid(n) for n in line_numbers]],
    )


def vacuum_analyze(*tables: str) -> None:
    """Fresh statistics, as autovacuum would have them on a table that grew slowly."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(table)}")


# --- processes on loopback -------------------------------------------------------------------


def database_url() -> str:
    """The URL of the database Django is connected to (in the suite: the test database)."""
    from django.db import connection

    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def child_env(**extra: str) -> dict:
    """The environment for a web or worker process on the same database and services."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "esimsite.settings.test"),
        "DATABASE_URL": database_url(),
        **extra,
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, *, timeout: float = 60.0, process=None) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def stop(process, *, timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except Exception:
            process.kill()
            process.wait()


@contextmanager
def gunicorn(*, workers: int, log_name: str, threads: int = 1):
    """gunicorn serving esimsite on a free loopback port; yields the base URL."""
    import subprocess

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(OUT_DIR / f"{log_name}.log", "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "esimsite.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread" if threads > 1 else "sync",
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=child_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()


# --- customers who can pay, and real workers ----------------------------------------------------


def customers_with_cards(*, count: int, data_remaining_bytes: int, threads: int = 4, card_for=None) -> list[int]:
    """Customers bench1..bench<count>, each with one line (its rule renews below 500 MB) and a
    default Visa card in localstripe, made through the payments gateway as the portal makes it:
    4242 4242 4242 4242, or card_for(n) for customer n (a localstripe test card that declines or
    asks for 3-D Secure). Returns the line ids, in customer order."""
    from concurrent.futures import ThreadPoolExecutor

    import stripe
    from django.conf import settings
    from django.db import connection

    from accounts.models import Line, User
    from payments import gateways

    package = bench_package()
    load_users(first=1, last=count)
    load_lines(first=1, last=count, package_id=package.pk, with_owners=True, data_remaining_bytes=data_remaining_bytes)
    load_rules(first=1, last=count, package_id=package.pk)
    gateways.ensure_local_owner_account()
    users = list(User.objects.filter(email__startswith="bench").order_by("pk"))

    def add_card(user) -> None:
        try:
            customer = gateways.ensure_customer(user)
            pm = stripe.PaymentMethod.create(
                type="card",
                card={
                    "number": card_for(int(user.email[5:].split("@")[0])) if card_for else "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "cvc": "123",
                },
                api_key=settings.STRIPE_SECRET_KEY,
            )
            gateways.attach_payment_method(customer_id=customer.id, payment_method_id=pm["id"])
            gateways.set_default_payment_method(customer_id=customer.id, payment_method_id=pm["id"])
        finally:
            connection.close()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(add_card, users))
    return list(Line.objects.filter(iccid__startswith="8988").order_by("iccid").values_list("pk", flat=True))


@contextmanager
def celery_worker(*, concurrency: int, log_name: str, name: str = "bench", env: dict | None = None):
    """A real Celery worker (prefork, `concurrency` processes) on the same database and Redis, with
    `env` added to its environment; waits until it is ready to take tasks."""
    import subprocess

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{log_name}.log"
    log = open(path, "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "esimsite",
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"{name}-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=child_env(**(env or {})),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while b" ready." not in path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start:\n{path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield process
    finally:
        stop(process)
        log.close()


def wait_until(predicate, *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def processor_write_times(*, since: float, until: float, path_prefix: str = "POST /v1/payment_intents") -> list[float]:
    """When each write reached localstripe, from its own access log (ESIMSITE_SERVICES_DIR/
    localstripe.log): the line is logged when the answer is sent, and ends with the request's own
    time (%Tf, scripts/localstripe_server.py), so the arrival is the log time minus that. Arrival is
    where the processor counts its rate limit; the answer's time would bunch a slow second's
    writes into the next one. Sorted, in [since, until]."""
    import datetime as dt

    services_dir = os.environ.get("ESIMSITE_SERVICES_DIR")
    if not services_dir:
        return []
    out = []
    with open(Path(services_dir) / "localstripe.log", errors="replace") as f:
        for line in f:
            if path_prefix not in line:
                continue
            try:
                stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            except ValueError:
                continue
            seconds = time.mktime(stamp.timetuple()) + stamp.microsecond / 1e6  # asctime is local time
            try:
                seconds -= float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                pass  # a log without the request's time: the answer's time
            if since <= seconds <= until:
                out.append(seconds)
    return sorted(out)


def processor_writes_per_second(
    *, since: float, until: float, path_prefix: str = "POST /v1/payment_intents"
) -> dict[int, int]:
    """Writes localstripe itself received, per whole second of wall-clock time in [since, until]:
    the processor's count, not ours."""
    counts: dict[int, int] = {}
    for seconds in processor_write_times(since=since, until=until, path_prefix=path_prefix):
        counts[int(seconds)] = counts.get(int(seconds), 0) + 1
    return counts
