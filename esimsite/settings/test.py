"""Test settings: the real services started by scripts/with-services (PostgreSQL, Redis,
localstripe); only email and SMS are captured, as they cannot run here."""
from .base import *  # noqa: F403
from .base import env

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SMS_BACKEND = "accounts.sms.LocmemBackend"
CACHES["default"]["KEY_PREFIX"] = env("CACHE_KEY_PREFIX", default="esimsite-test")  # noqa: F405
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
