"""Per-user and per-IP limits on the portal's payment-writing endpoints (buying, paying a
renewal, adding or choosing a payment method): each attempt costs a processor call and a
SetupIntent is the classic card-testing vector. Counters live in the shared cache (Redis), so every
web process counts together."""

import functools
import logging

from django.conf import settings
from django.core.cache import cache
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_limits(text: str) -> list[tuple[int, int, str]]:
    """'5/10m/user,30/10m/ip' -> [(5, 600, 'user'), (30, 600, 'ip')] (allauth's notation)."""
    limits = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        amount, duration, per = part.split("/")
        if per not in ("user", "ip"):
            raise ValueError(f"rate limit per {per!r}: 'user' or 'ip'")
        limits.append((int(amount), int(duration[:-1] or 1) * _UNITS[duration[-1]], per))
    return limits


def _client_ip(request) -> str:
    # allauth's adapter honours ALLAUTH_TRUSTED_PROXY_COUNT behind a proxy, as its own limits do.
    from allauth.account.adapter import get_adapter

    return get_adapter().get_client_ip(request)


def consume(request, action: str) -> bool:
    """Counts one attempt; False once any of the action's limits is used up. A refused attempt
    counts too, so hammering keeps the door shut until the window ends."""
    allowed = True
    for amount, seconds, per in parse_limits(settings.PAYMENTS_RATE_LIMITS.get(action, "")):
        who = str(request.user.pk) if per == "user" else _client_ip(request)
        key = f"payments-rl:{action}:{per}:{seconds}:{who}"
        # add() starts the window only if none is open; incr() is atomic in Redis.
        cache.add(key, 0, timeout=seconds)
        try:
            count = cache.incr(key)
        except ValueError:  # the window ended between add() and incr()
            cache.add(key, 1, timeout=seconds)
            count = 1
        allowed = allowed and count <= amount
    return allowed


def limit(action: str, *, json: bool = False):
    """View decorator: POSTs beyond the action's limits get a 429 page (or 429 JSON for the
    page's script) and never reach the view, so no Charge or intent is made for them."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method != "POST" or consume(request, action):
                return view(request, *args, **kwargs)
            logger.warning(
                "rate_limited action=%s user=%s ip=%s path=%s",
                action,
                request.user.pk,
                _client_ip(request),
                request.path,
            )
            message = _(
                "Too many payment attempts in a short time. Nothing was charged for this one. "
                "Please wait a few minutes and try again."
            )
            if json:
                return JsonResponse({"error": message}, status=429)
            return render(request, "429.html", {"message": message}, status=429)

        return wrapper

    return decorator
