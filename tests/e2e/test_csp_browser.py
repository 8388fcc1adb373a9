"""Pages the other browser tests do not open, walked under the Content-Security-Policy (the
autouse `csp_violations` fixture fails a test on any violation): a new operator's TOTP set-up with
its QR code image, admin forms with their widgets, and the customer's line, phone and receipt pages."""

import re
import time

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from playwright.sync_api import expect

from payments.models import Charge
from tests.builders import make_charge, make_line, make_package, make_user
from tests.e2e.conftest import PASSWORD

pytestmark = pytest.mark.e2e


def image_loaded(page, selector: str) -> bool:
    return page.locator(selector).first.evaluate("img => img.complete && img.naturalWidth > 0")


def test_new_operator_sets_up_totp_from_the_qr_page_and_uses_admin_forms(page, log_in, live_server, transactional_db):
    operator = make_user(email="new.operator@example.com", password=PASSWORD, is_staff=True, is_superuser=True)
    line = make_line(owner=make_user(email="someone@example.com"), package=make_package())
    log_in(operator)
    page.goto("/admin/")
    page.wait_for_url(re.compile(r"/reauthenticate/"))
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("input[name=password]").press("Enter")
    page.wait_for_url(re.compile(r"/2fa/totp/activate/$"))
    assert image_loaded(page, "img[src^='data:']")  # the QR code, a data: URI (img-src data:)
    secret = page.locator("#authenticator_secret").input_value()
    used = int(time.time()) // 30
    page.locator("input[name=code]").fill(format_hotp_value(hotp_value(secret, used)))
    page.locator("input[name=code]").press("Enter")
    page.wait_for_url(re.compile(r"/2fa/recovery-codes/$"))

    # Activating checked a code from the new authenticator: that is this session's code step
    # (docs/console.md, "Two-factor setup"), so the recovery codes page leads into the admin.
    # That a later login asks for the code is tests/console/test_admin_two_factor.py's.
    page.get_by_role("link", name="Continue to admin").click()
    page.wait_for_url(re.compile(r"/admin/$"))
    expect(page.get_by_role("heading", name="Operations", level=1)).to_be_visible()
    page.goto("/admin/accounts/line/")
    expect(page.locator("#result_list")).to_be_visible()
    page.goto(f"/admin/accounts/line/{line.pk}/change/")
    expect(page.locator("#line_form")).to_be_visible()
    page.goto("/admin/accounts/package/add/")
    expect(page.locator("#package_form")).to_be_visible()
    page.goto("/admin/renewals/retrypolicy/")
    page.goto("/admin/payments/charge/")
    assert page.js_errors == []


def test_customer_line_phone_and_receipt_pages(customer_page, verified_customer):
    page = customer_page
    package = make_package()
    line = make_line(owner=verified_customer, package=package, label="Phone")
    charge = make_charge(
        user=verified_customer,
        line=line,
        package=package,
        status=Charge.Status.SUCCEEDED,
        payment_intent_id="pi_receipt",
    )
    page.goto(f"/lines/{line.pk}/")
    expect(page.locator(".qr svg")).to_be_visible()
    page.goto("/accounts/phone/change/")  # allauth's page with the one hashed style attribute
    expect(page.locator("input[name=phone]")).to_be_visible()
    assert page.locator("form#verify-phone[style]").count() == 1  # so the watcher would see a blocked style
    page.goto(f"/payments/charges/{charge.pk}/receipt/")
    page.evaluate("window.print = function () { document.body.dataset.printed = 'yes'; }")
    page.locator("#print-receipt").click()
    expect(page.locator("body")).to_have_attribute("data-printed", "yes")  # receipt.js is loaded and allowed
    assert page.js_errors == []
