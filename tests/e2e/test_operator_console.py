"""The demo path in a real browser: the operator finds a customer by ICCID, sees why the last
renewal failed, retries it and refunds a charge, each after a confirmation page."""

import pytest
from playwright.sync_api import expect

from accounts.models import ChangeRecord
from payments import gateways
from payments.models import Charge
from payments.services import recording
from renewals.models import Renewal
from tests.builders import make_charge, make_line, make_package, make_renewal, make_user
from tests.payments.conftest import create_card

pytestmark = pytest.mark.e2e


def run_action(page, action: str, reason: str = ""):
    page.locator("input[name=_selected_action]").first.check()
    page.select_option("select[name=action]", action)
    page.locator("button[name=index]").first.click()
    expect(page.get_by_text("Please confirm")).to_be_visible()
    if reason:
        page.locator("input[name=reason]").fill(reason)
    page.get_by_role("button", name="Yes, do it").click()


def test_operator_finds_customer_by_iccid_retries_and_refunds(page, operator, log_in_operator):
    customer = make_user(email="demo.customer@example.com")
    package = make_package()
    line = make_line(owner=customer, package=package)
    renewal = make_renewal(
        line=line,
        package=package,
        status=Renewal.Status.RETRY_SCHEDULED,
        attempts=1,
        failures=1,
        last_failure_code="insufficient_funds",
        last_failure_message="Your card has insufficient funds.",
    )
    stripe_customer = gateways.ensure_customer(customer)
    method = gateways.attach_payment_method(customer_id=stripe_customer.id, payment_method_id=create_card())
    charge = make_charge(user=customer, line=line, package=package)
    charge = recording.record_outcome(
        charge_id=charge.pk,
        outcome=gateways.charge_off_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=method.id),
    )

    log_in_operator(operator)
    page.goto(f"/admin/accounts/user/?q={line.iccid}")
    page.get_by_role("link", name="demo.customer@example.com").click()
    expect(page.locator("#customer-renewals")).to_contain_text("Your card has insufficient funds.")

    page.goto(f"/admin/renewals/renewal/?q={line.iccid}")
    run_action(page, "retry_now_confirmed", reason="customer topped up the card")
    expect(page.locator(".messagelist")).to_contain_text("1 object done")
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.DUE

    page.goto(f"/admin/payments/charge/?q={charge.payment_intent_id}")
    run_action(page, "refund_confirmed", reason="goodwill")
    expect(page.locator(".messagelist")).to_contain_text("1 object done")
    charge.refresh_from_db()
    assert charge.status == Charge.Status.REFUNDED
    assert set(ChangeRecord.objects.filter(actor=operator).values_list("action", flat=True)) == {
        "retry_now",
        "refunded",
    }
