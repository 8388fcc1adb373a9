"""Test settings: the real services started by scripts/with-services (PostgreSQL, Redis,
localstripe, given through DATABASE_URL, REDIS_URL and STRIPE_API_BASE); only email and SMS are
captured, as they cannot run here. Without those services (`make test-fast`: the tests marked
`pure`, tests/conftest.py) the database is SQLite in memory and the cache is in the process."""

from .development import use_development_environment

use_development_environment(DATABASE_URL="sqlite://:memory:")

from .base import *  # noqa: E402, F403
from .base import env  # noqa: E402

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SMS_BACKEND = "accounts.sms.LocmemBackend"
CACHES["default"]["KEY_PREFIX"] = env("CACHE_KEY_PREFIX", default="esimsite-test")  # noqa: F405
if not env("REDIS_URL", default=""):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "memory://"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
