"""A renewal that needs 3-D Secure, end to end: the engine charges off-session, the bank wants
the customer, the email's pay-now link opens in Chromium, the customer completes the bank's check
(localstripe's Stripe.js stand-in), and the line is renewed."""

import re

from django.core import mail
from django.core.management import call_command
from playwright.sync_api import expect

from accounts.models import Line
from payments import gateways
from renewals.models import Renewal, RenewalRule
from tests.builders import GB, MB, make_line, make_package
from tests.e2e.conftest import email_link
from tests.payments.conftest import create_card

THREE_D_SECURE_CARD = "4000002500003155"


def test_three_d_secure_renewal_is_paid_from_the_email_link(customer_page, verified_customer):
    page = customer_page
    package = make_package(name="10 GB / 30 days", data_allowance_bytes=10 * GB, price_minor=9800)
    line = make_line(owner=verified_customer, package=package, data_remaining_bytes=100 * MB)
    RenewalRule.objects.create(line=line, package=package, enabled=True, trigger_data_below_mb=500)
    stripe_customer = gateways.ensure_customer(verified_customer)
    method = gateways.attach_payment_method(
        customer_id=stripe_customer.id, payment_method_id=create_card(THREE_D_SECURE_CARD)
    )
    gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=method.id)

    call_command("renewals_tick")  # the beat's pass, charging inline
    renewal = Renewal.objects.get(line=line)
    assert renewal.status == Renewal.Status.REQUIRES_ACTION
    assert "needs your action" in mail.outbox[-1].subject

    page.goto(f"/renewals/lines/{line.pk}/")
    expect(page.locator(".banner")).to_contain_text("needs your action")
    page.goto(email_link("/payments/renewals/"))
    page.get_by_role("button", name="Pay now").click()
    page.wait_for_url(re.compile(r"/authenticate/$"))
    page.get_by_role("button", name="Complete authentication").click()
    page.wait_for_url(re.compile(r"/receipt/$"))
    expect(page.locator(".messages")).to_contain_text("Payment received")

    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == 100 * MB + 10 * GB
    page.goto(f"/renewals/lines/{line.pk}/")
    expect(page.locator(".banner")).to_have_count(0)  # a success is history, not a banner
    assert page.js_errors == []
