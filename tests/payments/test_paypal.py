"""PayPal through Stripe, end to end over HTTP against localstripe's PayPal emulation
(scripts/localstripe_paypal.py, docs/payment-methods.md): the SetupIntent, the redirect to approve,
our return page, the saved method, then an off-session charge of it."""

import pytest
import requests
from django.conf import settings
from django.urls import reverse

from payments import gateways
from payments.selectors import payment_methods_for_user
from tests.builders import make_charge, make_package


@pytest.fixture
def paypal_market(settings):
    settings.STRIPE_PAYPAL_ENABLED = True
    settings.DEFAULT_CURRENCY = "USD"  # PayPal is offered for USD (PAYMENT_METHOD_TYPES_BY_CURRENCY)


def confirm_paypal_as_stripe_js(start: dict, return_url: str) -> dict:
    """What Stripe.js's confirmPayPalSetup sends (the publishable key, the client secret)."""
    response = requests.post(
        f"{settings.STRIPE_API_BASE}/v1/setup_intents/{start['setup_intent_id']}/confirm",
        json={
            "key": settings.STRIPE_PUBLISHABLE_KEY,
            "client_secret": start["client_secret"],
            "payment_method_data": {"type": "paypal"},
            "return_url": return_url,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_customer_approves_paypal_and_it_is_saved_then_charged_off_session(customer, customer_client, paypal_market):
    page = customer_client.get(reverse("payments:methods")).content.decode()
    assert 'value="paypal"' in page
    start = customer_client.post(reverse("payments:method_setup"), {"method_type": "paypal"}).json()
    back = "http://testserver" + reverse("payments:method_return") + "?make_default=on"
    intent = confirm_paypal_as_stripe_js(start, back)
    assert intent["status"] == "requires_action" and intent["next_action"]["type"] == "redirect_to_url"
    approve = intent["next_action"]["redirect_to_url"]["url"]
    assert "Agree and continue" in requests.get(approve, timeout=10).text
    approved = requests.post(approve, data={"decision": "approve"}, allow_redirects=False, timeout=10)
    location = approved.headers["Location"]
    assert approved.status_code == 303 and location.startswith(back) and "redirect_status=succeeded" in location
    # Back on our site: a GET changes nothing, it shows what was approved with a button to save it.
    returned = customer_client.get(location.removeprefix("http://testserver"))
    assert returned.status_code == 200 and "PayPal" in returned.content.decode()
    assert payment_methods_for_user(customer) == []
    finish = customer_client.post(
        reverse("payments:method_finish"), {"setup_intent_id": start["setup_intent_id"], "make_default": "on"}
    )
    assert finish.status_code == 302
    (method,) = payment_methods_for_user(customer)
    assert method.type == "paypal" and method.is_default
    # A renewal charges it without the customer, as a PayPal billing agreement allows.
    charge = make_charge(user=customer, package=make_package(currency="USD", price_minor=500))
    outcome = gateways.charge_off_session(
        charge=charge, customer_id=gateways.customer_for_user(customer).id, payment_method_id=method.id
    )
    assert outcome.kind == gateways.OutcomeKind.SUCCEEDED


def test_a_customer_who_cancels_at_paypal_saves_nothing(customer, customer_client, paypal_market):
    start = customer_client.post(reverse("payments:method_setup"), {"method_type": "paypal"}).json()
    back = "http://testserver" + reverse("payments:method_return")
    intent = confirm_paypal_as_stripe_js(start, back)
    cancelled = requests.post(
        intent["next_action"]["redirect_to_url"]["url"], data={"decision": "cancel"}, allow_redirects=False, timeout=10
    )
    assert "redirect_status=failed" in cancelled.headers["Location"]
    returned = customer_client.get(cancelled.headers["Location"].removeprefix("http://testserver"))
    assert returned.status_code == 400 and "Nothing was saved" in returned.content.decode()
    assert payment_methods_for_user(customer) == []
