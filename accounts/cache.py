"""The default cache: Redis, shared by every web process, with this process's memory as a fallback
while Redis cannot be reached. What lives in the cache is rate-limit counters (allauth's login and
code limits, payments/rate_limits.py) and short leases; losing them for an outage costs a limit that
is counted per process instead of across processes, never a customer locked out by a 500 and never
a door left open (docs/deploying.md "Redis down")."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)

# Errors that mean "Redis is not there", not "the command was wrong".
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class _Outage:
    """Process-wide: after a failure, requests skip Redis for RETRY seconds (a refused connection
    is quick, a dropped network is not: each try would cost the socket timeout)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.down = False

    def skipping(self) -> bool:
        return self.down and time.monotonic() < self.down_until

    def failed(self, retry_seconds: float, exc: Exception) -> None:
        with self.lock:
            if not self.down:
                logger.warning(
                    "cache_redis_unavailable error=%s: rate limits count in this process", type(exc).__name__
                )
            self.down = True
            self.down_until = time.monotonic() + retry_seconds

    def recovered(self) -> None:
        if self.down:
            with self.lock:
                if self.down:
                    logger.warning("cache_redis_back: rate limits count in Redis again")
                self.down = False


outage = _Outage()


class FallbackRedisCache(RedisCache):
    """Django's RedisCache; any operation that finds Redis unreachable is done on a LocMemCache of
    this process instead. The two are not merged when Redis returns: counters started during the
    outage simply start again (a window at most)."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self.retry_seconds = float(params.get("FALLBACK_RETRY_SECONDS", 5))
        self.local = LocMemCache(
            "esimsite-redis-fallback",
            {
                "TIMEOUT": params.get("TIMEOUT", 300),
                "KEY_PREFIX": params.get("KEY_PREFIX", ""),
                "VERSION": params.get("VERSION", 1),
                "OPTIONS": {"MAX_ENTRIES": 100_000},
            },
        )

    def _either(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if not outage.skipping():
            try:
                result = getattr(super(), name)(*args, **kwargs)
            except UNREACHABLE as exc:
                outage.failed(self.retry_seconds, exc)
            else:
                outage.recovered()
                return result
        return getattr(self.local, name)(*args, **kwargs)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._either("add", key, value, timeout, version)

    def get(self, key, default=None, version=None):
        return self._either("get", key, default, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._either("set", key, value, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._either("touch", key, timeout, version)

    def delete(self, key, version=None):
        return self._either("delete", key, version)

    def get_many(self, keys, version=None):
        return self._either("get_many", keys, version)

    def has_key(self, key, version=None):
        return self._either("has_key", key, version)

    def incr(self, key, delta=1, version=None):
        return self._either("incr", key, delta, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._either("set_many", data, timeout, version)

    def delete_many(self, keys, version=None):
        return self._either("delete_many", keys, version)

    def clear(self):
        self.local.clear()
        return self._either("clear")
