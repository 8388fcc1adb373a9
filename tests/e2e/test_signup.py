"""A new customer signs up in a real browser, verifies the email by link and sees the account page."""

import pytest
from django.core import mail
from playwright.sync_api import expect

from accounts.models import User
from tests.builders import make_line
from tests.e2e.conftest import PASSWORD, email_link

pytestmark = pytest.mark.e2e


def test_sign_up_verify_email_and_see_the_account_page(page, live_server):
    page.goto("/accounts/signup/")
    page.get_by_label("Email").fill("new.customer@example.com")
    page.locator("input[name=password1]").fill(PASSWORD)
    page.locator("input[name=password2]").fill(PASSWORD)
    page.locator("form[action='/accounts/signup/'] button[type=submit]").click()
    expect(page.get_by_role("heading", name="Verify Your Email Address")).to_be_visible()

    assert [message.to for message in mail.outbox] == [["new.customer@example.com"]]
    page.goto(email_link("/accounts/confirm-email/"))
    page.get_by_role("button", name="Confirm").click()

    page.wait_for_url(live_server.url + "/")
    expect(page.get_by_role("heading", name="My lines", level=1)).to_be_visible()
    expect(page.get_by_text("You have no eSIM yet")).to_be_visible()
    assert User.objects.get(email="new.customer@example.com").emailaddress_set.get().verified
    assert page.js_errors == []


def test_customer_copies_the_activation_code(browser, live_server, verified_customer, transactional_db):
    line = make_line(owner=verified_customer, matching_id="E2E-COPY-1")
    context = browser.new_context(base_url=live_server.url, locale="en-US")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    try:
        page.goto("/accounts/login/")
        page.locator("input[name=login]").fill(verified_customer.email)
        page.locator("input[name=password]").fill(PASSWORD)
        page.locator("form[action='/accounts/login/'] button[type=submit]").click()
        page.get_by_role("link", name=line.iccid).click()
        page.wait_for_load_state("load")  # copy.js is deferred: its click handler exists after load
        page.bring_to_front()  # the async clipboard API needs a focused document
        expect(page.get_by_role("heading", name="Install this eSIM")).to_be_visible()
        expect(page.get_by_role("img", name="QR code of the activation code")).to_be_visible()
        page.get_by_role("button", name="Copy").click()
        expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()
        assert page.evaluate("navigator.clipboard.readText()") == line.lpa_string
    finally:
        context.close()


def test_account_page_in_chinese(page, log_in, verified_customer):
    verified_customer.language = "zh-hans"
    verified_customer.save()
    make_line(owner=verified_customer, label="手机")
    log_in(verified_customer)  # the saved language wins over the browser's English
    expect(page.get_by_role("heading", name="我的 eSIM", level=1)).to_be_visible()
    expect(page.locator("progress")).to_have_count(1)
    expect(page.get_by_text("本套餐剩余", exact=True)).to_be_visible()  # "Left in this package"


def test_customer_page_fixture_is_logged_in(customer_page, live_server):
    assert customer_page.url == live_server.url + "/"
    # A phone screen: the links, and Log out, are under the header's Menu (docs/pages.md).
    customer_page.locator(".nav-compact summary").click()
    expect(customer_page.get_by_role("button", name="Log out")).to_be_visible()
