"""Screenshots for review (not committed)."""

import time

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from tests.builders import make_line, make_package, make_user
from tests.e2e.conftest import PASSWORD

OUT = "/work/shots/rights"


@pytest.mark.parametrize("lang", ["en", "zh-hans"])
def test_shots(browser, live_server, lang, transactional_db):
    package = make_package(name="10 GB / 30 days")
    customer = make_user(email=f"shot-{lang}@example.com", password=PASSWORD, language=lang, name="Alice")
    make_line(owner=customer, package=package, label="Phone")
    operator = make_user(
        email=f"ops-{lang}@example.com", password=PASSWORD, is_staff=True, is_superuser=True, language=lang
    )
    secret = generate_totp_secret()
    TOTP.activate(operator, secret)
    for width in (390, 1280):
        ctx = browser.new_context(locale="en-US", viewport={"width": width, "height": 900}, base_url=live_server.url)
        page = ctx.new_page()
        page.goto("/accounts/login/")
        page.fill("input[name=login]", customer.email)
        page.fill("input[name=password]", PASSWORD)
        page.locator("form button[type=submit]").last.click()
        page.wait_for_load_state()
        page.goto("/settings/")
        page.locator("#data-title").scroll_into_view_if_needed()
        page.screenshot(path=f"{OUT}/settings-{lang}-{width}.png", full_page=True)
        page.goto("/settings/close/")
        page.screenshot(path=f"{OUT}/close-{lang}-{width}.png", full_page=True)
        page.locator("button.danger").click()
        page.wait_for_load_state()
        page.screenshot(path=f"{OUT}/close-error-{lang}-{width}.png", full_page=True)
        ctx.close()
    from tests.accounts.helpers import totp_code

    for width in (390, 1280):
        ctx = browser.new_context(locale="en-US", viewport={"width": width, "height": 900}, base_url=live_server.url)
        page = ctx.new_page()
        page.goto("/accounts/login/")
        page.fill("input[name=login]", operator.email)
        page.fill("input[name=password]", PASSWORD)
        page.locator("form button[type=submit]").last.click()
        page.wait_for_load_state()
        if "authenticate" in page.url:
            if width == 1280:
                time.sleep(31)
            page.fill("input[name=code]", totp_code(secret))
            page.locator("form button[type=submit]").last.click()
            page.wait_for_load_state()
        page.goto(f"/admin/accounts/user/{customer.pk}/change/")
        page.screenshot(path=f"{OUT}/admin-user-{lang}-{width}.png", full_page=True)
        page.goto("/admin/accounts/user/?q=shot-")
        page.locator("input[name=_selected_action]").first.check()
        page.select_option("select[name=action]", "close_accounts")
        page.locator("button[name=index]").first.click()
        page.wait_for_load_state()
        page.screenshot(path=f"{OUT}/admin-confirm-{lang}-{width}.png", full_page=True)
        ctx.close()
