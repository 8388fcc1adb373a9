"""Production (wsgi/asgi's default): base, which already requires every secret and the database
from the environment, plus the hosts, live Stripe, secure cookies, HSTS and TLS behind a proxy."""

from .base import *  # noqa: F403
from .base import env

# One JSON object per log line, for the log shipper (docs/operations-metrics.md "Logs").
LOGGING["handlers"]["console"]["formatter"] = env("LOG_FORMAT", default="json")  # noqa: F405

DEBUG = False
# Each gunicorn thread keeps its database connection between requests: opening one (a new
# PostgreSQL backend process, authentication, set-up statements) cost more than the portal's page
# itself (docs/portal-performance.md). workers x threads connections per web host.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)  # noqa: F405
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
# Stripe.js's nested frames and its 3-D Secure pages (Stripe's published CSP requirements).
CSP_EXTRA_SCRIPT_SRC = env.list("CSP_EXTRA_SCRIPT_SRC", default=["https://*.js.stripe.com"])
CSP_EXTRA_FRAME_SRC = env.list("CSP_EXTRA_FRAME_SRC", default=["https://*.js.stripe.com", "https://hooks.stripe.com"])
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", default=True)
STRIPE_WRITE_RATE_LIMIT = env.int("STRIPE_WRITE_RATE_LIMIT", default=100 if STRIPE_LIVE_MODE else 25)
STRIPE_TEST_SECRET_KEY = "" if STRIPE_LIVE_MODE else STRIPE_SECRET_KEY  # noqa: F405
STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY if STRIPE_LIVE_MODE else ""  # noqa: F405

# The TLS proxy in front (nginx: docs/deploying.md) must set X-Forwarded-Proto itself, overwriting
# any the client sent; Django then treats the request as https (redirects, Secure cookies, CSRF).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Links in allauth's emails (confirmation, password reset) use https behind the proxy.
ACCOUNT_DEFAULT_HTTP_PROTOCOL = env("ACCOUNT_DEFAULT_HTTP_PROTOCOL", default="https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# The probes answer a load balancer or kubelet that asks gunicorn over plain http (docs/deploying.md).
SECURE_REDIRECT_EXEMPT = [r"^healthz(/live|/ready)?$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_SAMESITE = "Lax"
# Only the server reads the language cookie; over https only like the others.
LANGUAGE_COOKIE_SECURE = True
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
# Flash messages in the session, not in a cookie of their own: Django deletes the "messages" cookie
# with a Set-Cookie that has no Secure flag (delete_cookie), which `make prod-smoke` catches.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
