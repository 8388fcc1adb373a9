"""Settings shared by every environment, read from the environment. Safe if deployed by mistake:
DEBUG is off (debug pages show settings and stack frames), every secret and the database must be
given (no development value to fall back on), mail goes out by SMTP and Stripe is the real one.
`local` (`make run`, manage.py and Celery's default) and `test` fill in the development values;
`production` adds https and cookie hardening. docs/development.md lists the modules."""

from datetime import timedelta
from pathlib import Path

import environ
from django.utils.translation import gettext_lazy as _
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY")
# Empty: with DEBUG off Django answers no host until the deployment names its own.
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
# The portal's public address, for links in emails (no request to take it from).
SITE_URL = env("SITE_URL")
SITE_ID = 1

INSTALLED_APPS = [
    "console.apps.StaffAdminConfig",  # django.contrib.admin whose admin.site demands a TOTP step
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "djstripe",
    "accounts.apps.AccountsConfig",
    "payments",
    "renewals",
    "partner",
    "provisioning",
    "console",
]

MIDDLEWARE = [
    # Outermost: the request id is set before anything logs and echoed on every response.
    "accounts.middleware.RequestIdMiddleware",
    # First: it times the whole request and sees the status every other middleware settled on.
    "accounts.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "accounts.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "accounts.middleware.UserTimeZoneMiddleware",
    "accounts.middleware.UserLanguageMiddleware",
    "accounts.middleware.RateLimitedMiddleware",
]

ROOT_URLCONF = "esimsite.urls"
WSGI_APPLICATION = "esimsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.tz",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
# A kept connection that the server closed (restart, idle timeout) is replaced before a request uses it.
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The zero-set-up run shares one file between the portal, the worker and beat.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "accounts:home"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The Babel locale money and dates are formatted in, per language (accounts/locale_format.py).
BABEL_LOCALES = {"en": env("BABEL_LOCALE_EN", default="en_US"), "zh-hans": "zh_Hans_CN"}
USE_I18N = True
FORMAT_MODULE_PATH = ["esimsite.formats"]
TIME_ZONE = "UTC"
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Files browsers ask for at the root (/favicon.ico, /apple-touch-icon.png), served by WhiteNoise
# without collectstatic (scripts/make-icons.py draws them; docs/pages.md).
WHITENOISE_ROOT = BASE_DIR / "static" / "root"

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Redis, with this process's memory while Redis cannot be reached (accounts/cache.py): the rate
# limits kept here fall back to per-process counting instead of a 500 (docs/deploying.md).
CACHES = {
    "default": {
        "BACKEND": "accounts.cache.FallbackRedisCache",
        "LOCATION": env("CACHE_URL", default=REDIS_URL.rsplit("/", 1)[0] + "/1"),
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="esimsite"),
        # An unreachable Redis costs each request at most this, then is skipped for a few seconds.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

# Celery: the broker only carries work; every task re-reads its rows (docs/invariants.md #4).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600}
CELERY_TIMEZONE = "UTC"
# Beat's sweeps have a queue of their own, listed first, and every worker consumes both. Redis
# hands each worker the next message from its queues in turn, so a tick waits for at most the
# task in hand. In one queue, ticks sat behind a backlog of charges until they expired (the
# 2,000-line chaos run: every tick discarded while 2,000 charges drained, so nothing was
# reconciled for ten minutes).
# Every task beat sends is routed there (CELERY_TASK_ROUTES, with the schedule at the end).
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (Queue("sweeps"), Queue("celery"))

# Email and SMS: console in development, captured in tests, real backends otherwise. The
# deployment names its SMS backend (docs/notifications.md#sms): accounts.sms.TwilioBackend or
# accounts.sms.SignedHTTPBackend.
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
# The product's name in emails and SMS ("Hello from …", "[…] Please confirm…"), and their sender.
SITE_NAME = env("SITE_NAME", default="Axis eSIM")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default=f"{SITE_NAME} <no-reply@esimsite.local>")
# A mobile number typed without "+country code" is read in the region of the page's language
# (accounts/phone.py): 13800138000 is a Chinese mobile for a zh-Hans customer.
PHONE_REGION_BY_LANGUAGE = {"zh-hans": "CN"}
PHONE_DEFAULT_REGION = env("PHONE_DEFAULT_REGION", default="US")
SMS_BACKEND = env("SMS_BACKEND")
# Seconds one attempt may take; a verification code is sent while the person waits for the page.
SMS_TIMEOUT_SECONDS = env.float("SMS_TIMEOUT_SECONDS", default=5.0)
# Pauses before each retry of a verification code after a transient failure (429, 5xx, timeout):
# two retries, so at most three attempts, all inside the one send allauth rate-limits.
SMS_RETRY_DELAYS_SECONDS = env.list("SMS_RETRY_DELAYS_SECONDS", cast=float, default=[0.5, 2.0])
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN", default="")
# An API key (SK...) to authenticate with instead of the account's own token (TWILIO_AUTH_TOKEN
# then holds the key's secret).
TWILIO_API_KEY_SID = env("TWILIO_API_KEY_SID", default="")
TWILIO_FROM = env("TWILIO_FROM", default="")
TWILIO_MESSAGING_SERVICE_SID = env("TWILIO_MESSAGING_SERVICE_SID", default="")
# Only for a stand-in (tests); Twilio's own otherwise.
SMS_TWILIO_API_BASE = env("SMS_TWILIO_API_BASE", default="https://api.twilio.com")
SMS_HTTP_URL = env("SMS_HTTP_URL", default="")
SMS_HTTP_SECRET = env("SMS_HTTP_SECRET", default="")

# Stripe through dj-stripe. In development and tests STRIPE_API_BASE points at localstripe.
# Live mode is the deployment's choice (production.py turns it on unless told otherwise).
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", default=False)
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY")
STRIPE_PUBLISHABLE_KEY = env("STRIPE_PUBLISHABLE_KEY")
STRIPE_TEST_SECRET_KEY = STRIPE_SECRET_KEY
STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY if STRIPE_LIVE_MODE else ""
STRIPE_API_BASE = env("STRIPE_API_BASE", default="https://api.stripe.com")
STRIPE_JS_URL = env("STRIPE_JS_URL", default="https://js.stripe.com/v3/")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET")
# The secret being rotated out, accepted alongside STRIPE_WEBHOOK_SECRET while set
# (payments.webhooks.CappedWebhookView, docs/deploying.md#rotating-secrets).
STRIPE_WEBHOOK_SECRET_PREVIOUS = env("STRIPE_WEBHOOK_SECRET_PREVIOUS", default="")
STRIPE_PAYPAL_ENABLED = env.bool("STRIPE_PAYPAL_ENABLED", default=False)
# Which payment method types each currency's customers are offered (docs/payment-methods.md), as
# JSON in the environment. A currency not listed gets PAYMENT_METHOD_TYPES_DEFAULT. PayPal also
# needs STRIPE_PAYPAL_ENABLED (the Stripe account must have it turned on).
PAYMENT_METHOD_TYPES_BY_CURRENCY = env.json(
    "PAYMENT_METHOD_TYPES_BY_CURRENCY",
    default={"CNY": ["card"], "EUR": ["card", "sepa_debit"], "USD": ["card", "paypal"]},
)
PAYMENT_METHOD_TYPES_DEFAULT = env.list("PAYMENT_METHOD_TYPES_DEFAULT", default=["card"])
# A customer with no line or payment yet is offered the methods of this currency.
DEFAULT_CURRENCY = env("DEFAULT_CURRENCY", default="CNY")
# Seconds before a Stripe call gives up; a charge that times out is reconciled, not re-sent.
STRIPE_HTTP_TIMEOUT_SECONDS = env.float("STRIPE_HTTP_TIMEOUT_SECONDS", default=20.0)
# Retries for reads and binding calls only; charge calls never retry (payments/gateways.py).
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=1)
# Content-Security-Policy (accounts.middleware): Stripe.js's own origin comes from STRIPE_JS_URL
# and the API's from STRIPE_API_BASE; these add what real Stripe.js also loads (production.py).
CSP_EXTRA_SCRIPT_SRC = env.list("CSP_EXTRA_SCRIPT_SRC", default=[])
CSP_EXTRA_FRAME_SRC = env.list("CSP_EXTRA_FRAME_SRC", default=[])
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
# dj-stripe stores a webhook body before checking its signature: bodies above this are refused
# with a 413 and never stored (payments.webhooks.CappedWebhookView). Stripe's events are a few KB.
STRIPE_WEBHOOK_MAX_BODY_BYTES = env.int("STRIPE_WEBHOOK_MAX_BODY_BYTES", default=512 * 1024)
# Stored webhook requests (dj-stripe's WebhookEventTrigger) are pruned by beat: those that failed
# validation after a day, the others after this many days (the Events themselves are kept, so a
# redelivered event is still recognised as a duplicate).
STRIPE_WEBHOOK_TRIGGER_RETENTION_DAYS = env.int("STRIPE_WEBHOOK_TRIGGER_RETENTION_DAYS", default=30)
# Processor write-rate limit (payments/processor_limit.py), shared by every process through Redis.
# Stripe allows 100 writes/s in live mode and 25 in test mode (stripe.com/docs/rate-limits); its
# newer pages also give single endpoints (POST /v1/payment_intents) 25/s unless raised: set the
# limit to what the account really has.
STRIPE_WRITE_RATE_LIMIT = env.int("STRIPE_WRITE_RATE_LIMIT", default=100 if STRIPE_LIVE_MODE else 25)
# A write whose slot is further away than this is not sent ("processor busy", retried later).
STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS = env.float("STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS", default=2.0)
# The limit is kept over 1 s plus this margin: a request reaches the processor a little after the
# limiter let it through (scheduling, network), and the limit must hold where Stripe counts.
STRIPE_RATE_LIMIT_MARGIN_SECONDS = env.float("STRIPE_RATE_LIMIT_MARGIN_SECONDS", default=0.1)
STRIPE_RATE_LIMIT_REDIS_URL = env("STRIPE_RATE_LIMIT_REDIS_URL", default=REDIS_URL)
STRIPE_RATE_LIMIT_KEY_PREFIX = env("STRIPE_RATE_LIMIT_KEY_PREFIX", default="esimsite")
# A purchase still pending this long after it was sent cannot be in flight any more: reconcile it.
PAYMENTS_RECONCILE_AFTER = timedelta(seconds=env.int("PAYMENTS_RECONCILE_AFTER_SECONDS", default=600))
# A purchase waiting for 3-D Secure is looked up until then, and its intent withdrawn after.
PAYMENTS_AUTHENTICATION_WINDOW = timedelta(hours=env.int("PAYMENTS_AUTHENTICATION_WINDOW_HOURS", default=24))
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_USE_NATIVE_JSONFIELD = True

# Portal payment writes (payments/rate_limits.py), allauth's notation: N/<duration>/user|ip, each
# counted in the shared cache. "payment": buying and paying a renewal; "payment_method": starting
# a SetupIntent (card testing), finishing one (each confirmation the page reports), choosing a
# default and removing a method (both can make a method the default, which can retry a failed
# renewal at once).
PAYMENTS_RATE_LIMITS = {
    "payment": env("PAYMENTS_RATE_LIMIT_PAYMENT", default="5/10m/user,30/10m/ip"),
    "payment_method": env("PAYMENTS_RATE_LIMIT_PAYMENT_METHOD", default="10/h/user,30/h/ip"),
}

# Network partner: usage records in, commands out.
PARTNER_USAGE_SECRET = env("PARTNER_USAGE_SECRET")
# Each signing secret has a previous value, set only while it is being rotated
# (docs/deploying.md#rotating-secrets): incoming signatures may use either; outgoing commands carry
# a signature with each.
PARTNER_USAGE_SECRET_PREVIOUS = env("PARTNER_USAGE_SECRET_PREVIOUS", default="")
PARTNER_SIGNATURE_TOLERANCE = timedelta(minutes=5)
# How long after its period ends a usage record may still arrive on time (docs/usage.md): longer
# than any partner retry. A record of an earlier package that arrives later is reported as "late".
USAGE_LATENESS_WINDOW = timedelta(hours=env.int("USAGE_LATENESS_WINDOW_HOURS", default=6))
# How far back a usage record's period may start and still be checked for a duplicate
# (docs/usage.md, "History"): records older than this are refused, because the day partition
# that would hold their first copy may be gone. Much longer than any partner retry and than the
# lateness window; the operator's retention (UsageRetention) can never be shorter.
USAGE_DEDUP_WINDOW = timedelta(days=env.int("USAGE_DEDUP_WINDOW_DAYS", default=35))
NETWORK_WEBHOOK_URL = env("NETWORK_WEBHOOK_URL", default="")
NETWORK_WEBHOOK_SECRET = env("NETWORK_WEBHOOK_SECRET")
NETWORK_WEBHOOK_SECRET_PREVIOUS = env("NETWORK_WEBHOOK_SECRET_PREVIOUS", default="")

# Prometheus's scraper sends "Authorization: Bearer <METRICS_TOKEN>" to /metrics; empty: no
# /metrics at all (404). docs/operations-metrics.md, also for the multiprocess directory.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# The outbox sweep (partner/tasks.py) is the safety net behind the kick sent after each commit:
# a command whose kick was lost with Redis goes out at the next sweep.
NETWORK_COMMANDS_SWEEP_INTERVAL = timedelta(seconds=env.int("NETWORK_COMMANDS_SWEEP_SECONDS", default=15))
# Customer notices (docs/notifications.md): each is kicked after the commit that owes it; the beat
# sweep (below) sends the ones whose kick was lost and retries the ones the mail server refused.
NOTICES_SWEEP_INTERVAL = timedelta(seconds=env.int("NOTICES_SWEEP_SECONDS", default=30))
# Validity is enforced by this sweep (accounts/services/line_status.py: expire_lines): a line is
# expired, and suspended at the network, within a minute of its end, at most this many per tick.
LINES_EXPIRE_PER_TICK = env.int("LINES_EXPIRE_PER_TICK", default=500)

# Errors to Sentry when SENTRY_DSN is set: Django and Celery, no personal data (send_default_pii off,
# and every string of an event masked by accounts/log_context.py; docs/operations-metrics.md).
SENTRY_DSN = env("SENTRY_DSN", default="")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    from accounts.log_context import scrub_sentry_event

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        before_send=scrub_sentry_event,
        environment=env("SENTRY_ENVIRONMENT", default="production"),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )

# Every handler masks card numbers and phone numbers and adds the request id and the engine's ids
# (accounts/log_context.py); production writes JSON lines (docs/operations-metrics.md "Logs").
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "accounts.log_context.ContextFilter"}},
    "formatters": {
        "plain": {
            "()": "accounts.log_context.MaskedFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {
            "()": "accounts.log_context.MaskedJsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
            "json_ensure_ascii": False,
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# django-allauth: sign-up with an email, a mobile number or both; each one given is verified
# before the first login (email by link, phone by SMS code) and is a login name. allauth's own
# email stage is replaced by one that lets a phone-only customer through once the phone is
# verified (accounts/stages.py, docs/sign-up.md); rate limits on.
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_FORMS = {"login": "accounts.forms.LoginForm", "signup": "accounts.forms.SignupForm"}
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email", "phone"}
ACCOUNT_SIGNUP_FIELDS = ["email", "phone", "password1*", "password2*"]  # one of the two: SignupForm
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = False  # a link
ACCOUNT_CONFIRM_EMAIL_ON_GET = False  # the link opens a page with a Confirm button: mail scanners cannot confirm
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
# The subject prefix is "[SITE_NAME] " (accounts/adapter.py).
ACCOUNT_DEFAULT_HTTP_PROTOCOL = env("ACCOUNT_DEFAULT_HTTP_PROTOCOL", default="http")
ACCOUNT_PHONE_VERIFICATION_ENABLED = True
ACCOUNT_PHONE_VERIFICATION_MAX_ATTEMPTS = 3
ACCOUNT_PHONE_VERIFICATION_TIMEOUT = 15 * 60
# allauth's default code looks like "GPTX-RXNQ": people type digits from an SMS.
ACCOUNT_PHONE_VERIFICATION_CODE_FORMAT = {"numeric": True, "length": 6, "dashed": False}
ACCOUNT_PHONE_VERIFICATION_SUPPORTS_RESEND = True
ACCOUNT_PHONE_VERIFICATION_SUPPORTS_CHANGE = True
# {} keeps allauth's default limits ON (False would switch them off). They live in the cache,
# which is Redis: shared by every web process. Behind a proxy set ALLAUTH_TRUSTED_PROXY_COUNT.
ACCOUNT_RATE_LIMITS: dict = {}
ALLAUTH_TRUSTED_PROXY_COUNT = env.int("ALLAUTH_TRUSTED_PROXY_COUNT", default=0)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "esimsite"
# One 30-second step either side (RFC 6238's allowance for delay): an operator whose code rolled
# over while it was typed is not refused; a code two steps old still is.
MFA_TOTP_TOLERANCE = 1

# Renewals (renewals/tasks.py): beat ticks the dispatcher; state lives in the database.
RENEWALS_DISPATCH_INTERVAL = timedelta(seconds=env.int("RENEWALS_DISPATCH_INTERVAL_SECONDS", default=30))
# A charge left pending this long (a crash, a time-out) is reconciled by looking its PaymentIntent up.
RENEWALS_RECONCILE_AFTER = timedelta(minutes=env.int("RENEWALS_RECONCILE_AFTER_MINUTES", default=10))
RENEWALS_CLAIM_BATCH_SIZE = env.int("RENEWALS_CLAIM_BATCH_SIZE", default=100)
# Claimed renewals travel to the workers this many per Celery message, and each worker process
# charges a message's renewals on this many threads so that their processor round trips overlap
# (docs/performance-renewals.md). Every thread holds a database connection while it runs.
RENEWALS_CHARGE_BATCH_SIZE = env.int("RENEWALS_CHARGE_BATCH_SIZE", default=10)
RENEWALS_CHARGE_THREADS = env.int("RENEWALS_CHARGE_THREADS", default=4)
# The customer's time to confirm a renewal with the bank (3-D Secure) is the retry policy's
# authentication_hours; this, when set, replaces it with seconds: the chaos run (bench/chaos.py)
# lets cycles close within the run. Unset in production.
_authentication_window_seconds = env("RENEWALS_AUTHENTICATION_WINDOW_SECONDS", default="")
RENEWALS_AUTHENTICATION_WINDOW = (
    timedelta(seconds=int(_authentication_window_seconds)) if _authentication_window_seconds else None
)

# The SM-DP+ (ES2+, docs/provisioning.md). Production: https with mutual TLS (our client
# certificate and key, the CA bundle that signed the SM-DP+'s certificate). Development and tests:
# the stand-in (scripts/smdp_standin.py), started by `make run` and scripts/with-services.
SMDP_URL = env("SMDP_URL", default="")
SMDP_REQUESTER_ID = env("SMDP_REQUESTER_ID", default="esimsite")
SMDP_CLIENT_CERT = env("SMDP_CLIENT_CERT", default="")
SMDP_CLIENT_KEY = env("SMDP_CLIENT_KEY", default="")
SMDP_CA_BUNDLE = env("SMDP_CA_BUNDLE", default="")
SMDP_TIMEOUT_SECONDS = env.float("SMDP_TIMEOUT_SECONDS", default=15.0)
# What the SM-DP+ sends in the X-ES2-Callback-Secret header of HandleDownloadProgressInfo.
SMDP_CALLBACK_SECRET = env("SMDP_CALLBACK_SECRET", default="")
SMDP_PROFILE_TYPE = env("SMDP_PROFILE_TYPE", default="default")
# "smdp": the SM-DP+ allocates (DownloadOrder without ICCID); "pool": an ICCID from the imported pool.
PROVISIONING_PROFILE_SOURCE = env("PROVISIONING_PROFILE_SOURCE", default="smdp")
PROVISIONING_LOW_POOL = env.int("PROVISIONING_LOW_POOL", default=10)
PROVISIONING_INSTALL_REMINDER_AFTER = timedelta(days=env.int("PROVISIONING_INSTALL_REMINDER_DAYS", default=3))

# Everything beat sends, in one place. A sweep not started within its interval is superseded by
# the next one ("expires"). Each goes to the "sweeps" queue (CELERY_TASK_QUEUES above says why).
CELERY_BEAT_SCHEDULE = {
    "renewals-dispatch": {
        "task": "renewals.dispatch_renewals",
        "schedule": RENEWALS_DISPATCH_INTERVAL,
        "options": {"expires": RENEWALS_DISPATCH_INTERVAL.total_seconds()},
    },
    "payments-reconcile": {"task": "payments.reconcile_pending_purchases", "schedule": 300.0},
    "payments-log-processor-writes": {
        "task": "payments.log_processor_writes",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "payments-prune-webhook-triggers": {
        "task": "payments.prune_webhook_triggers",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    "accounts-deliver-network-commands": {
        "task": "accounts.deliver_network_commands",
        "schedule": NETWORK_COMMANDS_SWEEP_INTERVAL,
        "options": {"expires": NETWORK_COMMANDS_SWEEP_INTERVAL.total_seconds()},
    },
    "accounts-expiry-notices": {
        "task": "accounts.send_expiry_notices",
        "schedule": timedelta(minutes=10),
        "options": {"expires": 600},
    },
    "accounts-send-notices": {
        "task": "accounts.send_notices",
        "schedule": NOTICES_SWEEP_INTERVAL,
        "options": {"expires": NOTICES_SWEEP_INTERVAL.total_seconds()},
    },
    "provisioning-sweep-orders": {
        "task": "provisioning.sweep_orders",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
    "provisioning-install-reminders": {
        "task": "provisioning.send_install_reminders",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    "accounts-usage-partitions": {
        "task": "accounts.maintain_usage_partitions",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    "accounts-expire-lines": {
        "task": "accounts.expire_lines",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
}
CELERY_TASK_ROUTES = {entry["task"]: {"queue": "sweeps"} for entry in CELERY_BEAT_SCHEDULE.values()}
