"""The processor write-rate limiter: every write to Stripe, from any process on any machine, takes
a send slot from one Redis log (an atomic Lua script on Redis's own clock), so that no second holds
more than STRIPE_WRITE_RATE_LIMIT writes; and the counters the operations page shows."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from accounts import metrics

logger = logging.getLogger(__name__)

# Times are integer microseconds on Redis's clock, formatted with %.0f: Lua's default %.14g
# would round a 16-digit timestamp.
#
# Two logs. `sent` is the truth: the writes let through, stamped when they were let through; a
# write goes only while fewer than `limit` of them lie in the last window. `schedule` plans the
# waits: a waiting write books the earliest time t not before the last booking that leaves at most
# limit-1 bookings in (t - window, t], so waiters wake one by one, first come first served, instead
# of all at once. A waiter woken late (a busy machine) is checked against `sent` again before it
# goes, so lateness can never put more than `limit` writes into a window of the log.
_COMMON = """
local function us(x) return string.format('%.0f', x) end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- The earliest time the sent log lets one more write through (now if it has room).
local function sent_room(sent_key, now, limit, window)
  redis.call('ZREMRANGEBYSCORE', sent_key, '-inf', us(now - window))
  if redis.call('ZCARD', sent_key) < limit then return now end
  local nth = redis.call('ZRANGE', sent_key, -limit, -limit, 'WITHSCORES')
  return math.max(now, tonumber(nth[2]) + window)
end
-- Lets one write through now; keeps the most writes any 1-second window of the log held. Redis
-- runs scripts one at a time and TIME only grows, so counting the second that ends at each new
-- entry, when it is added, sees every window.
local function send(sent_key, stats_key, now, member, window)
  redis.call('ZADD', sent_key, us(now), member)
  redis.call('PEXPIRE', sent_key, us(window / 1000 + 1000))
  local n = redis.call('ZCOUNT', sent_key, '(' .. us(now - 1000000), '+inf')
  local max = tonumber(redis.call('HGET', stats_key, 'max_window') or '0')
  if n > max then
    redis.call('HSET', stats_key, 'max_window', n, 'max_window_at', us(now))
  end
end
"""

# KEYS: schedule, sent, stats. ARGV: limit, window (us), max wait (us), member.
# Returns {granted, wait us}: granted with wait 0 means sent now; with a wait, sleep and CONFIRM.
_ACQUIRE = (
    _COMMON
    + """
local now = clock()
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', us(now - window))
local at = sent_room(KEYS[2], now, limit, window)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) > at then at = tonumber(last[2]) end
if redis.call('ZCARD', KEYS[1]) >= limit then
  local nth = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
  if tonumber(nth[2]) + window > at then at = tonumber(nth[2]) + window end
end
local wait = at - now
if wait > max_wait then
  redis.call('HINCRBY', KEYS[3], 'refused', 1)
  return {0, wait}
end
redis.call('ZADD', KEYS[1], us(at), ARGV[4])
redis.call('PEXPIRE', KEYS[1], us((window + max_wait) / 1000 + 1000))
redis.call('HSETNX', KEYS[3], 'since', us(now))
if wait == 0 then
  redis.call('HINCRBY', KEYS[3], 'writes', 1)
  send(KEYS[2], KEYS[3], now, ARGV[4], window)
end
return {1, wait}
"""
)

# KEYS: sent, stats. ARGV: limit, window (us), member, waited so far (us), max wait (us).
# A write whose booked time has come. Returns {sent?, further wait us}; refused past the max wait.
_CONFIRM = (
    _COMMON
    + """
local now = clock()
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local waited = tonumber(ARGV[4])
local at = sent_room(KEYS[1], now, limit, window)
if at > now then
  if waited + (at - now) > tonumber(ARGV[5]) then
    redis.call('HINCRBY', KEYS[2], 'refused', 1)
    return {0, -1}
  end
  return {0, at - now}
end
redis.call('HINCRBY', KEYS[2], 'writes', 1)
redis.call('HINCRBY', KEYS[2], 'waited', 1)
redis.call('HINCRBY', KEYS[2], 'wait_us', us(waited))
send(KEYS[1], KEYS[2], now, ARGV[3], window)
return {1, 0}
"""
)

# KEYS: sent. Writes sent in the last second.
_LAST_SECOND = (
    _COMMON
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. us(clock() - 1000000), '+inf')
"""
)


class WriteNotSent(Exception):
    """The write was not sent: its slot is further away than the bounded wait (`rate_limited`), or
    the limiter's Redis cannot be asked (`limiter_unavailable`)."""

    def __init__(self, reason: str, *, wait: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


_clients: dict[str, tuple[redis.Redis, dict[str, Any]]] = {}
_clients_lock = threading.Lock()


def _client() -> tuple[redis.Redis, dict[str, Any]]:
    url = settings.STRIPE_RATE_LIMIT_REDIS_URL
    with _clients_lock:
        if url not in _clients:
            # Short time-outs: a Redis that does not answer must not hold a payment longer than the
            # bounded wait. One immediate retry reconnects a pooled socket that a Redis restart closed.
            client = redis.Redis.from_url(
                url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1)
            )
            scripts = {
                name: client.register_script(source)
                for name, source in (("acquire", _ACQUIRE), ("confirm", _CONFIRM), ("last_second", _LAST_SECOND))
            }
            _clients[url] = (client, scripts)
        return _clients[url]


def _keys() -> dict[str, str]:
    # Stripe limits live and test mode separately.
    base = f"{settings.STRIPE_RATE_LIMIT_KEY_PREFIX}:stripe-writes:{'live' if settings.STRIPE_LIVE_MODE else 'test'}"
    return {"schedule": f"{base}:schedule", "sent": f"{base}:sent", "stats": f"{base}:stats"}


def window_seconds() -> float:
    """Stripe's second plus the margin that absorbs the jitter between the slot and the request
    reaching the processor (a process descheduled after its sleep, the network)."""
    return 1.0 + float(settings.STRIPE_RATE_LIMIT_MARGIN_SECONDS)


def acquire_write(*, method: str, path: str) -> float:
    """Wait for this write's send slot, at most STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS; returns the
    seconds waited. Raises WriteNotSent, and then the caller must not send it."""
    keys = _keys()
    member = uuid.uuid4().hex
    limit, window = int(settings.STRIPE_WRITE_RATE_LIMIT), int(window_seconds() * 1_000_000)
    max_wait = int(settings.STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS * 1_000_000)
    started = time.monotonic()
    try:
        _redis, scripts = _client()
        granted, wait_us = scripts["acquire"](
            keys=[keys["schedule"], keys["sent"], keys["stats"]], args=[limit, window, max_wait, member]
        )
        while granted and wait_us:
            time.sleep(int(wait_us) / 1_000_000)
            waited_us = int((time.monotonic() - started) * 1_000_000)
            sent, wait_us = scripts["confirm"](
                keys=[keys["sent"], keys["stats"]], args=[limit, window, member, waited_us, max_wait]
            )
            granted = sent or wait_us > 0
    except redis.RedisError as exc:
        # Fail closed: only the shared log can keep the limit across processes and machines.
        logger.error(
            "stripe_write_refused reason=limiter_unavailable method=%s path=%s error=%s",
            method,
            path,
            type(exc).__name__,
        )
        metrics.PROCESSOR_WRITES.labels(result="refused").inc()
        raise WriteNotSent("limiter_unavailable") from exc
    waited = time.monotonic() - started
    if not granted:
        logger.warning(
            "stripe_write_refused reason=rate_limited method=%s path=%s limit=%s waited_ms=%d max_wait_ms=%d",
            method,
            path,
            limit,
            waited * 1000,
            max_wait / 1000,
        )
        metrics.PROCESSOR_WRITES.labels(result="refused").inc()
        raise WriteNotSent("rate_limited", wait=waited)
    metrics.PROCESSOR_WRITES.labels(result="sent").inc()
    if waited > 0.001:
        metrics.PROCESSOR_WRITES.labels(result="waited").inc()
        logger.info("stripe_write_waited method=%s path=%s waited_ms=%d", method, path, waited * 1000)
    return waited


@dataclass(frozen=True)
class WriteStats:
    limit: int
    writes: int
    waited: int
    wait_seconds_total: float
    refused: int
    max_window: int
    max_window_at: datetime | None
    last_second: int
    since: datetime | None

    @property
    def average_wait_ms(self) -> float:
        return self.wait_seconds_total * 1000 / self.waited if self.waited else 0.0


def _when(us: bytes | str | None) -> datetime | None:
    return datetime.fromtimestamp(int(us) / 1_000_000, tz=UTC) if us else None


def write_stats() -> WriteStats | None:
    """The counters since they were last reset (shared by every process); None when Redis cannot
    be asked."""
    keys = _keys()
    try:
        client, scripts = _client()
        stored = client.hgetall(keys["stats"])
        last_second = int(scripts["last_second"](keys=[keys["sent"]]))
    except redis.RedisError:
        return None
    raw = {k.decode() if isinstance(k, bytes) else k: v for k, v in stored.items()}
    return WriteStats(
        limit=int(settings.STRIPE_WRITE_RATE_LIMIT),
        writes=int(raw.get("writes", 0)),
        waited=int(raw.get("waited", 0)),
        wait_seconds_total=int(raw.get("wait_us", 0)) / 1_000_000,
        refused=int(raw.get("refused", 0)),
        max_window=int(raw.get("max_window", 0)),
        max_window_at=_when(raw.get("max_window_at")),
        last_second=last_second,
        since=_when(raw.get("since")),
    )


def reset_write_stats() -> None:
    """Start the counters again (benchmarks, tests). The schedule stays: the limit holds across it."""
    keys = _keys()
    client, _scripts = _client()
    client.delete(keys["stats"], keys["sent"])


def log_write_stats() -> WriteStats | None:
    stats = write_stats()
    if stats is None:
        logger.error("stripe_write_stats unavailable=redis")
        return None
    logger.info(
        "stripe_write_stats limit=%s writes=%s waited=%s wait_total_ms=%d refused=%s max_in_1s=%s last_1s=%s",
        stats.limit,
        stats.writes,
        stats.waited,
        stats.wait_seconds_total * 1000,
        stats.refused,
        stats.max_window,
        stats.last_second,
    )
    return stats
