"""The development values `local` and `test` give what `base` requires from the environment:
localstripe's keys and address, SQLite, console email and SMS. A variable already set wins. Never
imported by `production`, so none of these can reach a deployment."""

import os

DEVELOPMENT_ENVIRONMENT = {
    "SECRET_KEY": "dev-only-insecure-key-change-me-in-production-0123456789",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,[::1]",
    "SITE_URL": "http://127.0.0.1:8000",
    "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
    "SMS_BACKEND": "accounts.sms.ConsoleBackend",
    "STRIPE_SECRET_KEY": "sk_test_localstripe0esimsite0devonly0key",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe0esimsite0devonly0key",
    "STRIPE_WEBHOOK_SECRET": "whsec_localstripe_esimsite",
    "STRIPE_API_BASE": "http://127.0.0.1:8420",
    "STRIPE_JS_URL": "http://127.0.0.1:8420/js.stripe.com/v3/",
    "SMDP_URL": "http://127.0.0.1:8430",
    "SMDP_CALLBACK_SECRET": "dev-smdp-callback-secret",
    "PARTNER_USAGE_SECRET": "dev-partner-usage-secret",
    "NETWORK_WEBHOOK_SECRET": "dev-network-webhook-secret",
}


def use_development_environment(**overrides: str) -> None:
    """Sets every development value (and `overrides`) that the environment does not already set.
    Through os.environ, so the processes these settings start (worker, beat) see the same."""
    for name, value in {**DEVELOPMENT_ENVIRONMENT, **overrides}.items():
        os.environ.setdefault(name, value)
