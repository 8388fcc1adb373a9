"""Browser harness: Debian's Chromium driven by Playwright against pytest-django's live_server.

Fixtures for every browser test (payments and renewals use them too):
- `browser` (module): headless Chromium from /usr/bin/chromium (installed by the set-up; never
  `playwright install`);
- `page`: a fresh context (own cookies) on the live server, English, with `base_url` set, so
  `page.goto("/accounts/login/")` works; `page.js_errors` lists uncaught script errors;
- `log_in(user, password=PASSWORD)`: logs a user in through the real login form;
- `verified_customer`: a customer with a verified email and the password PASSWORD;
- `customer_page`: `page` with `verified_customer` already logged in;
- `email_link(path_prefix)`: the path of the first link starting with path_prefix in the newest
  email in mail.outbox (the live server shares this process, so its emails land there);
- `operator` + `log_in_operator(operator)`: a superuser with TOTP, logged in through the code step,
  so `page.goto("/admin/")` opens the admin (a TOTP code counts once per 30 s: log in once per test).

Checked after every browser test, whichever fixtures it uses (autouse):
- no Content-Security-Policy violation in any page of any browser context (`securitypolicyviolation`
  events and Chromium's CSP console errors);
- no card number in any text/JSON/bytea column of the database nor in any log line written
  during the test, the live server's request log included (tests/e2e/card_scan.py).
"""

import logging
import os
import re
import time

import pytest
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from django.core import mail
from django.core.servers.basehttp import WSGIRequestHandler
from django.test.testcases import QuietWSGIRequestHandler
from playwright.sync_api import Browser, sync_playwright

from tests.builders import make_user
from tests.e2e.card_scan import card_numbers_in_database, card_numbers_in_lines

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "e2e-Long-passw0rd!"
TIMEOUT_MS = 15_000


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


# Reports every CSP violation of a page (and its frames) to the test through an exposed binding.
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.__esimsiteCspViolation(e.violatedDirective + " blocked " + (e.blockedURI || "inline") +
                                " at " + (e.sourceFile || e.documentURI) + ":" + e.lineNumber);
});
"""


@pytest.fixture(autouse=True)
def csp_violations(monkeypatch):
    """Every browser context of the test, whoever opens it, watches for CSP violations."""
    found: list[str] = []
    new_context = Browser.new_context

    def watched_new_context(self, *args, **kwargs):
        context = new_context(self, *args, **kwargs)
        context.expose_binding(
            "__esimsiteCspViolation", lambda source, text: found.append(f"{source['frame'].url}: {text}")
        )
        context.add_init_script(CSP_WATCH)
        context.on(
            "console",
            lambda message: (
                found.append(f"console: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )
        return context

    monkeypatch.setattr(Browser, "new_context", watched_new_context)
    yield found
    assert found == [], "Content-Security-Policy violations:\n" + "\n".join(found)


@pytest.fixture(autouse=True)
def no_card_numbers_stored_or_logged(request, tmp_path, monkeypatch):
    """After a browser test (before the live server's database is flushed): no card number in
    the database, nor in what our logging wrote to a file meanwhile."""
    if "live_server" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")  # so this check tears down before the flush
    # The live server's request log (method, path, query string, status) is silenced by Django's
    # test server; give it the development server's logging back.
    monkeypatch.setattr(QuietWSGIRequestHandler, "log_message", WSGIRequestHandler.log_message)
    log_file = tmp_path / "e2e.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # Our loggers, Celery's and Django's reach the root at their configured levels (LOGGING: INFO);
    # django.server does not propagate (Django's default logging), so it gets the file directly.
    loggers = [logging.getLogger(), logging.getLogger("django.server")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
    hits = card_numbers_in_database() + card_numbers_in_lines(log_file.read_text(encoding="utf-8").splitlines())
    assert hits == [], "card numbers stored or logged:\n" + "\n".join(hits)


@pytest.fixture(scope="module")
def _orm_beside_playwright():
    # Playwright's sync API runs an event loop in this thread; the ORM calls of fixtures and tests
    # (factories, live_server's flush, assertions) would otherwise be refused as "async unsafe".
    # Scoped to the module: the variable must not leak into other tests (check --deploy refuses it).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


# Module scope: one Playwright per thread at a time, so a module that starts its own Playwright
# must not find ours still running from an earlier module.
@pytest.fixture(scope="module")
def browser(_orm_beside_playwright):
    if not os.path.exists(CHROMIUM):
        raise pytest.UsageError(f"{CHROMIUM} is missing: apt-get install -y chromium (the set-up does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_context_options():
    """Override in a test module to change the locale, viewport, permissions..."""
    return {"locale": "en-US", "viewport": {"width": 390, "height": 844}}  # a phone screen


@pytest.fixture
def page(browser, live_server, browser_context_options):
    context = browser.new_context(base_url=live_server.url, **browser_context_options)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    yield page
    context.close()


@pytest.fixture
def verified_customer(transactional_db):
    return make_user(email="browser.customer@example.com", password=PASSWORD)


@pytest.fixture
def log_in(page):
    def log_in(user, password: str = PASSWORD):
        page.goto("/accounts/login/")
        page.locator("input[name=login]").fill(user.email or user.phone)
        page.locator("input[name=password]").fill(password)
        page.locator("form[action='/accounts/login/'] button[type=submit]").click()
        page.wait_for_url(re.compile(r"^(?!.*/accounts/login/)"))
        return page

    return log_in


@pytest.fixture
def customer_page(page, log_in, verified_customer):
    return log_in(verified_customer)


def email_link(path_prefix: str) -> str:
    if not mail.outbox:
        raise AssertionError("no email was sent")
    match = re.search(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"\S*)", mail.outbox[-1].body)
    if match is None:
        raise AssertionError(f"no link to {path_prefix} in: {mail.outbox[-1].body}")
    return match.group(1)


@pytest.fixture
def operator(transactional_db):
    user = make_user(email="browser.operator@example.com", password=PASSWORD, is_staff=True, is_superuser=True)
    user.totp_secret = generate_totp_secret()
    TOTP.activate(user, user.totp_secret)
    return user


@pytest.fixture
def log_in_operator(page, log_in):
    def log_in_operator(user, password: str = PASSWORD):
        log_in(user, password)
        page.locator("input[name=code]").fill(format_hotp_value(hotp_value(user.totp_secret, int(time.time()) // 30)))
        page.locator("input[name=code]").press("Enter")
        page.wait_for_url(re.compile(r"^(?!.*/accounts/2fa/)"))
        return page

    return log_in_operator
