"""Under production settings every cookie a login over https sets is Secure, SameSite=Lax, and the
session cookie HttpOnly. The values are read from esimsite/settings/production.py itself (with
PRODUCTION_ENV, which tests/test_deploy_check.py also runs `check --deploy` under), not restated here."""

import importlib
import sys

import pytest
from django.test import Client
from django.urls import reverse

from tests.builders import make_user

PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 20 + "-production-like-secret-" + "y" * 30,
    "ALLOWED_HOSTS": "esim.example.com",
    "SITE_URL": "https://esim.example.com",
    "STRIPE_SECRET_KEY": "sk_live_example",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_example",
    "STRIPE_WEBHOOK_SECRET": "whsec_example",
    "PARTNER_USAGE_SECRET": "partner-secret-example",
    "NETWORK_WEBHOOK_SECRET": "network-secret-example",
    "SMS_BACKEND": "accounts.sms.ConsoleBackend",
}
# What production decides about cookies and https; the rest (database, Stripe keys) stays the suite's.
COOKIE_AND_TLS_SETTINGS = [
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SAMESITE",
    "LANGUAGE_COOKIE_SECURE",
    "LANGUAGE_COOKIE_HTTPONLY",
    "LANGUAGE_COOKIE_SAMESITE",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
]


@pytest.fixture
def production(settings, monkeypatch):
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("esimsite.settings.production", None)
    module = importlib.import_module("esimsite.settings.production")
    sys.modules.pop("esimsite.settings.production", None)
    for name in COOKIE_AND_TLS_SETTINGS:
        # Absent from the module means Django's default, which is what production would run with.
        if hasattr(module, name):
            setattr(settings, name, getattr(module, name))
    return module


def test_login_over_https_sets_only_secure_cookies(production, db):
    user = make_user(email="prod@example.com", password="a-Long-passw0rd!", language="zh-hans")
    client = Client()
    page = client.get(reverse("account_login"), secure=True)
    assert page.status_code == 200
    response = client.post(reverse("account_login"), {"login": user.email, "password": "a-Long-passw0rd!"}, secure=True)
    assert response.status_code == 302
    cookies = response.cookies
    assert {"sessionid", "csrftoken", "django_language"} <= set(cookies), cookies.output()
    # OutputString() is the Set-Cookie header's value as the WSGI handler sends it.
    headers = {name: cookies[name].OutputString() for name in cookies}
    for header in headers.values():
        assert "; Secure" in header and "; SameSite=Lax" in header, header
    assert "; HttpOnly" in headers["sessionid"] and "; HttpOnly" in headers["django_language"]


@pytest.mark.pure
def test_plain_http_is_sent_to_https_under_production(production):
    response = Client().get(reverse("account_login"))
    assert response.status_code == 301 and response["Location"].startswith("https://")
