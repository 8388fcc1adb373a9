"""The probes (docs/deploying.md "Probes"): `/healthz/live` (the process answers: for a restart
policy), `/healthz/ready` (this web process can serve: database reachable, migrations applied: for
the load balancer) and `/healthz`, the full status for operators and monitoring (database, Redis,
the broker's queue, the dispatcher's last pass). Counts and ages only: no host names, versions or
errors' text, which would tell an outsider about the inside."""

import threading

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.services import notices

from . import operations

BROKER_QUEUE = "celery"  # Celery's default queue: a Redis list of that name


def _redis_client(url: str):
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def check_database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        return False


def check_redis() -> bool:
    try:
        return bool(_redis_client(settings.REDIS_URL).ping())
    except Exception:
        return False


def broker_queue_length() -> int | None:
    try:
        return int(_redis_client(settings.CELERY_BROKER_URL).llen(BROKER_QUEUE))
    except Exception:
        return None


class _Migrations:
    """Whether the database has every migration this code ships. Once true it stays true for the
    process (the code's migrations do not change under it), so only probes before that pay for
    loading the migration graph."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.applied = False

    def check(self) -> bool:
        if self.applied:
            return True
        with self.lock:
            if not self.applied:
                executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
                self.applied = not executor.migration_plan(executor.loader.graph.leaf_nodes())
        return self.applied

    def forget(self) -> None:
        """Check again at the next probe (tests that unapply a migration)."""
        self.applied = False


migrations = _Migrations()


def migrations_applied() -> bool:
    try:
        return migrations.check()
    except Exception:
        return False


@never_cache
@require_GET
def live(request):
    """The process answers: no database, no Redis. A failure here means restart it."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request):
    """This web process can serve customers. Redis is deliberately not asked: without it pages
    still serve (the cache falls back to the process, kicks to the workers wait for beat's sweep,
    payments are refused with a message), and a Redis outage must not pull every web process out
    of the load balancer at once (docs/deploying.md "Redis down")."""
    database = check_database()
    applied = migrations_applied() if database else False
    body = {
        "database": "ok" if database else "down",
        "migrations": "ok" if applied else ("pending" if database else "unknown"),
    }
    body["status"] = "ok" if database and applied else "fail"
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)


@never_cache
@require_GET
def healthz(request):
    now = timezone.now()
    database = check_database()
    dispatcher = operations.dispatcher_job(now=now) if database else None
    body = {
        "database": "ok" if database else "down",
        "redis": "ok" if check_redis() else "down",
        "broker_queue_length": broker_queue_length(),
        "dispatcher_last_pass_age_seconds": int(dispatcher.age.total_seconds())
        if dispatcher and dispatcher.age is not None
        else None,
        "dispatcher": "unknown" if dispatcher is None else ("stale" if dispatcher.stale else "ok"),
    }
    # Dead-lettered network commands are reported, not failed on: they need an operator, and a 503
    # would take every web process out of the load balancer for one line's command.
    dead_letters = operations.dead_letter_count() if database else None
    body["network_commands_dead_lettered"] = dead_letters
    body["network_outbox"] = "unknown" if dead_letters is None else ("attention" if dead_letters else "ok")
    # Customer notices of the last two days that could not be sent: reported like the dead letters.
    failed_notices = notices.failed_notice_count(now=now) if database else None
    body["customer_notices_failed_48h"] = failed_notices
    body["customer_notices"] = "unknown" if failed_notices is None else ("attention" if failed_notices else "ok")
    healthy = body["database"] == "ok" and body["redis"] == "ok" and body["dispatcher"] == "ok"
    body["status"] = "ok" if healthy else "fail"
    return JsonResponse(body, status=200 if healthy else 503)
