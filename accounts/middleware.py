"""Per-request settings that follow the signed-in user: time zone, language, a 429 for
allauth's rate limits where allauth itself does not catch them, and the Content-Security-Policy."""

from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone, translation

from .user_locale import user_zone


class UserTimeZoneMiddleware:
    """Shows times in the signed-in user's own zone; storage stays UTC."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.time_zone:
            timezone.activate(user_zone(user))  # an unknown zone is UTC, as in the user's emails
        else:
            timezone.deactivate()
        return self.get_response(request)


class UserLanguageMiddleware:
    """A signed-in user's saved language beats the cookie and Accept-Language, and the cookie is
    refreshed so the choice also holds after logout. Sits after Authentication and Locale."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        language = self._saved_language(request)
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        response = self.get_response(request)
        language = self._saved_language(request)  # the user may have logged in during this request
        if language and request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) != language:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                language,
                max_age=settings.LANGUAGE_COOKIE_AGE,
                path=settings.LANGUAGE_COOKIE_PATH,
                domain=settings.LANGUAGE_COOKIE_DOMAIN,
                secure=settings.LANGUAGE_COOKIE_SECURE,
                httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
                samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            )
        return response

    @staticmethod
    def _saved_language(request) -> str:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.language:
            return ""
        return user.language if translation.check_for_language(user.language) else ""


class RateLimitedMiddleware:
    """allauth raises RateLimited from inside login stages (sending the phone code: "verify_phone",
    1/30s per number, 3/m per IP) without catching it. Answer 429, never 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from allauth.core.exceptions import RateLimited
        from allauth.core.ratelimit import respond_429

        if isinstance(exception, RateLimited):
            return respond_429(request)
        return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy() -> str:
    """The policy, built from settings so that the Stripe origins follow STRIPE_JS_URL and
    STRIPE_API_BASE (localstripe in development and tests, Stripe in production)."""
    stripe_js = _origin(settings.STRIPE_JS_URL)
    directives = {
        "default-src": ["'self'"],
        # No inline script anywhere: only our static files and Stripe.js.
        "script-src": ["'self'", stripe_js, *settings.CSP_EXTRA_SCRIPT_SRC],
        # Stripe.js draws card fields and the bank's 3-D Secure page in frames.
        "frame-src": [stripe_js, *settings.CSP_EXTRA_FRAME_SRC],
        # Stripe.js posts the card straight to the Stripe API from the browser.
        "connect-src": ["'self'", _origin(settings.STRIPE_API_BASE)],
        "img-src": ["'self'", "data:"],
        # allauth's phone-change page hides a form with style="display: none": the hash allows
        # that one declaration in a style attribute, nothing else inline.
        "style-src": ["'self'", "'unsafe-hashes'", "'sha256-ZdHxw9eWtnxUb3mk6tBS+gIiVUPE3pGM470keHPDFlE='"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
    return "; ".join(f"{name} {' '.join(dict.fromkeys(sources))}" for name, sources in directives.items())


class ContentSecurityPolicyMiddleware:
    """Sends the Content-Security-Policy on every response Django renders (portal, allauth,
    admin, error pages)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = content_security_policy()

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", self.policy)
        return response


class RequestMetricsMiddleware:
    """Request count and latency by the resolved view's name (never the raw path: ids and junk
    URLs would make a new series each). Unresolved paths count as "unresolved"."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        import time

        from . import metrics

        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match is not None else "unresolved"
        metrics.REQUEST_SECONDS.labels(view=view).observe(time.perf_counter() - started)
        metrics.REQUESTS.labels(
            view=view,
            method=request.method if request.method in _METHODS else "other",
            status=str(response.status_code),
        ).inc()
        return response


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class RequestIdMiddleware:
    """Every request has an id: the proxy's or client's X-Request-ID when it looks sane, else a new
    one. It is in every log line written while the request runs and in the response's X-Request-ID,
    so a customer's screenshot or a proxy log leads to the lines (docs/operations-metrics.md)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from .log_context import new_request_id, request_id

        value = new_request_id(request.headers.get("X-Request-ID"))
        request.request_id = value
        token = request_id.set(value)
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        response["X-Request-ID"] = value
        return response
