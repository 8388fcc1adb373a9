"""PayPal through Stripe in the browser, against localstripe's PayPal emulation
(scripts/localstripe_paypal.py): choose PayPal, approve at "PayPal", come back, save it."""

import re

import pytest
from playwright.sync_api import expect

from payments.selectors import payment_methods_for_user

pytestmark = pytest.mark.e2e


def test_a_usd_customer_saves_paypal_through_the_approval_redirect(customer_page, verified_customer, settings):
    settings.STRIPE_PAYPAL_ENABLED = True
    settings.DEFAULT_CURRENCY = "USD"  # PayPal is offered for USD (PAYMENT_METHOD_TYPES_BY_CURRENCY)
    page = customer_page
    page.goto("/payments/methods/")
    expect(page.locator('input[value="sepa_debit"]')).to_have_count(0)
    page.locator('input[name=method_type][value="paypal"]').check()
    page.locator("#add-method-submit").click()
    page.wait_for_url(re.compile(r"/_paypal/approve/seti_"))
    page.locator("#paypal-approve").click()
    page.wait_for_url(re.compile(r"/payments/methods/return/\?.*redirect_status=succeeded"))
    expect(page.get_by_text("was approved")).to_be_visible()
    page.locator("#return-finish-form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/payments/methods/$"))
    expect(page.get_by_text("PayPal").first).to_be_visible()
    (method,) = payment_methods_for_user(verified_customer)
    assert method.type == "paypal"
