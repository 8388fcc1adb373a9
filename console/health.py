"""/healthz for the load balancer: can this web process reach the database and Redis, how long
is the broker's queue, how old is the dispatcher's last pass. Counts and ages only: no host
names, versions or errors' text, which would tell an outsider about the inside."""

import redis
from django.conf import settings
from django.db import connection
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
