"""The payment pages in Debian's Chromium (Playwright) against a live server and localstripe's
Stripe.js stand-in: a card typed into Stripe's element (never into our forms), a declined card,
and a 3-D Secure purchase completed at the 'bank'.

This module brings its own small browser fixtures (session cookie login, named payments_*), so
it runs whether or not the shared harness in tests/e2e/conftest.py is present."""

import os
import re

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation
from playwright.sync_api import expect, sync_playwright

from accounts.models import Line
from payments import processor_errors
from payments.models import Charge
from tests.builders import make_line, make_package, make_user

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def payments_browser():
    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API runs an event loop in this thread; the ORM beside it is safe here.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            yield browser
            browser.close()


@pytest.fixture
def shopper(transactional_db):
    user = make_user(email="shopper@example.com")
    line = make_line(owner=user)
    package = make_package(name="20 GB / 30 days", data_allowance_bytes=20 * 1024**3, price_minor=12800)
    return user, line, package


@pytest.fixture
def payments_page(payments_browser, live_server, shopper):
    user = shopper[0]
    client = Client()
    client.force_login(user)
    context = payments_browser.new_context(base_url=live_server.url, locale="en-US")
    context.set_default_timeout(15_000)
    host = live_server.url.split("//")[1].split(":")[0]
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "domain": host,
                "path": "/",
            }
        ]
    )
    page = context.new_page()
    page.js_errors = []
    page.live_url = live_server.url  # our server; localstripe listens on another port
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    yield page
    context.close()


def type_card(page, number: str, month: str = "12", year: str = "34"):
    page.wait_for_selector("#card-element input[placeholder=number]")
    page.fill("#card-element input[placeholder=number]", number)
    page.fill("#card-element input[placeholder=exp_month]", month)
    page.fill("#card-element input[placeholder=exp_year]", year)
    page.fill("#card-element input[placeholder=cvc]", "123")
    page.fill("#card-element input[placeholder=postal_code]", "75001")


def test_declined_card_shows_the_error_and_saves_nothing(payments_page, shopper):
    page = payments_page
    page.goto("/payments/methods/")
    type_card(page, "4000000000000002")
    page.click("#add-method-submit")
    expect(page.locator("#method-error")).to_contain_text("Your card was declined")
    assert "/payments/methods/" in page.url
    assert page.locator("table.payment-methods").count() == 0
    assert page.js_errors == []


def test_add_a_3ds_card_and_buy_a_package_through_the_bank_check(payments_page, shopper):
    user, line, package = shopper
    page = payments_page
    sent_to_us = []
    page.on(
        "request",
        lambda request: sent_to_us.append(request.post_data or "") if request.url.startswith(page.live_url) else None,
    )
    page.goto("/payments/methods/")
    type_card(page, "4000002500003155")
    page.click("#add-method-submit")
    page.get_by_role("button", name="Complete authentication").click()  # the bank's check for the new card
    expect(page.locator(".messages")).to_contain_text("Visa •••• 3155 was added.")
    expect(page.locator("table.payment-methods")).to_contain_text("Default")

    before = Line.objects.get(pk=line.pk).data_remaining_bytes
    page.goto(f"/payments/lines/{line.pk}/buy/")
    page.get_by_label(re.compile("20 GB / 30 days")).check()
    page.get_by_role("button", name="Pay now").click()
    page.wait_for_url(re.compile(r"/authenticate/$"))
    page.get_by_role("button", name="Complete authentication").click()
    page.wait_for_url(re.compile(r"/receipt/$"))
    expect(page.locator(".messages")).to_contain_text("Payment received")
    expect(page.locator(".receipt .amount")).to_have_text("CN¥128.00")
    charge = Charge.objects.get(user=user)
    assert charge.status == Charge.Status.SUCCEEDED
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == before + package.data_allowance_bytes
    page.goto("/payments/history/")
    expect(page.locator(f'tr[data-charge-id="{charge.pk}"]')).to_contain_text("Succeeded")
    assert page.js_errors == []
    # The card number went from the browser to Stripe (localstripe) only, never to our server.
    assert any("payment_method" in body for body in sent_to_us)  # we did see our own form posts
    assert not any("4000002500003155" in body for body in sent_to_us)


def test_failed_bank_check_charges_nothing(payments_page, shopper):
    user, line, package = shopper
    page = payments_page
    page.goto("/payments/methods/")
    type_card(page, "4000002500003155")
    page.click("#add-method-submit")
    page.get_by_role("button", name="Complete authentication").click()
    # The URL is already /payments/methods/: wait for the finished binding's message instead.
    expect(page.locator(".messages")).to_contain_text("Visa •••• 3155 was added.")
    before = Line.objects.get(pk=line.pk).data_remaining_bytes
    page.goto(f"/payments/lines/{line.pk}/buy/")
    page.get_by_label(re.compile("20 GB / 30 days")).check()
    page.get_by_role("button", name="Pay now").click()
    page.get_by_role("button", name="Fail authentication").click()
    page.wait_for_url(re.compile(rf"/payments/lines/{line.pk}/buy/$"))
    expect(page.locator(".messages")).to_contain_text("authentication was not completed")
    assert Charge.objects.get(user=user).status == Charge.Status.FAILED
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == before


def test_a_four_digit_expiry_year_gets_a_sentence_not_bad_request(payments_page, shopper):
    # localstripe's card field prefixes "20": "2034" reaches the processor as 202034, refused as an
    # invalid expiry year (once shown as its bare "Bad request").
    page = payments_page
    page.goto("/payments/methods/")
    type_card(page, "4242424242424242", year="2034")
    page.click("#add-method-submit")
    expect(page.locator("#method-error")).to_contain_text("The expiry year is not valid: enter it as MM/YY")
    assert "Bad request" not in page.locator("#method-error").inner_text()
    assert page.locator("table.payment-methods").count() == 0


def test_card_errors_are_in_the_customers_language(payments_page, shopper):
    user = shopper[0]
    user.language = "zh-hans"
    user.save(update_fields=["language"])
    page = payments_page
    page.goto("/payments/methods/")
    type_card(page, "4000000000000002")
    page.click("#add-method-submit")
    with translation.override("zh-hans"):
        expected = str(processor_errors.CODES["card_declined"])
    assert expected != str(processor_errors.CODES["card_declined"])  # a Chinese sentence exists
    expect(page.locator("#method-error")).to_have_text(expected)
