"""Payments fixtures: customers and cards made in the real localstripe the suite runs against.
`add_card` plays the browser's part (Stripe.js would create the method from the number); the
number goes straight to localstripe, never through our code."""

import contextlib
import itertools
import socket
import threading

import pytest
import stripe
from django.conf import settings

from payments import gateways
from payments.services import recording, webhooks
from tests.builders import make_charge

_seq = itertools.count(1)


def create_card(number: str = "4242424242424242", *, exp_month: int = 12, exp_year: int = 2034) -> str:
    pm = stripe.PaymentMethod.create(
        type="card",
        card={"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": "123"},
        api_key=settings.STRIPE_SECRET_KEY,
    )
    return pm["id"]


@pytest.fixture
def stripe_customer(customer):
    return gateways.ensure_customer(customer)


@pytest.fixture
def add_card(stripe_customer):
    """add_card(number, default=True) -> the attached dj-stripe PaymentMethod."""

    def _add(number: str = "4242424242424242", *, default: bool = True, exp_month: int = 12, exp_year: int = 2034):
        pm = gateways.attach_payment_method(
            customer_id=stripe_customer.id,
            payment_method_id=create_card(number, exp_month=exp_month, exp_year=exp_year),
        )
        if default:
            gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=pm.id)
        return pm

    return _add


def _as_browser(path: str, data: dict):
    """What localstripe's Stripe.js stand-in sends with the publishable key (the card number
    goes from the 'browser' to localstripe, never through our server)."""
    import requests

    response = requests.post(
        f"{settings.STRIPE_API_BASE}{path}", json={"key": settings.STRIPE_PUBLISHABLE_KEY, **data}, timeout=10
    )
    return response


def confirm_setup_as_browser(
    client_secret: str, number: str = "4242424242424242", *, exp_month: int = 12, exp_year: int = 2034
):
    intent_id = client_secret.split("_secret_")[0]
    response = _as_browser(
        f"/v1/setup_intents/{intent_id}/confirm",
        {
            "client_secret": client_secret,
            "use_stripe_sdk": True,
            "payment_method_data": {
                "type": "card",
                "card": {"number": number, "exp_month": str(exp_month), "exp_year": str(exp_year), "cvc": "123"},
            },
        },
    )
    if response.status_code == 200 and response.json()["status"] == "requires_action":
        # 3-D Secure card: the stand-in's "Complete authentication" confirms the intent again.
        response = _as_browser(
            f"/v1/setup_intents/{intent_id}/confirm", {"client_secret": client_secret, "use_stripe_sdk": True}
        )
    return response


def confirm_sepa_setup_as_browser(client_secret: str, iban: str = "DE89370400440532013000"):
    intent_id = client_secret.split("_secret_")[0]
    return _as_browser(
        f"/v1/setup_intents/{intent_id}/confirm",
        {
            "client_secret": client_secret,
            "use_stripe_sdk": True,
            "payment_method_data": {
                "type": "sepa_debit",
                "sepa_debit": {"iban": iban},
                "billing_details": {"name": "Alice", "email": "alice@example.com"},
            },
        },
    )


def authenticate_as_browser(payment_intent_id: str, client_secret: str, *, success: bool = True):
    """The bank's 3-D Secure answer, as the stand-in posts it after 'Complete authentication'."""
    return _as_browser(
        f"/v1/payment_intents/{payment_intent_id}/_authenticate?success={'true' if success else 'false'}",
        {"client_secret": client_secret},
    )


@pytest.fixture
def bind_card(customer_client):
    """bind_card(number, make_default=True): the whole browser flow through our pages."""
    from django.urls import reverse

    def _bind(
        number: str = "4242424242424242",
        *,
        make_default: bool = True,
        exp_month: int = 12,
        exp_year: int = 2034,
        client=None,
    ):
        client = client or customer_client
        start = client.post(reverse("payments:method_setup"), {"method_type": "card"})
        assert start.status_code == 200, start.content
        data = start.json()
        browser = confirm_setup_as_browser(data["client_secret"], number, exp_month=exp_month, exp_year=exp_year)
        finish = client.post(
            reverse("payments:method_finish"),
            {"setup_intent_id": data["setup_intent_id"], "make_default": "on" if make_default else ""},
        )
        return browser, finish

    return _bind


@contextlib.contextmanager
def _hung_processor():
    """Point the SDK at a socket that accepts connections and never answers: what a hung
    processor looks like. Yields the held connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    # The SDK's globals, not settings: the autouse `settings` fixture is restored only after
    # this one, and configure() must then read the real values.
    stripe.api_base = f"http://127.0.0.1:{server.getsockname()[1]}"
    stripe.default_http_client = stripe.RequestsClient(timeout=0.5)
    try:
        yield held
    finally:
        gateways.configure()
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.fixture
def unresponsive_stripe():
    """Stripe hangs for the whole test."""
    with _hung_processor() as held:
        yield held


@pytest.fixture
def unresponsive_stripe_later():
    """Stripe hangs inside `with unresponsive_stripe_later():`, for tests that first need localstripe."""
    yield _hung_processor
    gateways.configure()


@pytest.fixture
def endpoint(db, settings):
    """Our webhook endpoint and its signing secret, as `make run` configures it for localstripe."""
    return webhooks.configure_local_webhook_endpoint(base_url="http://testserver", register=False)


@pytest.fixture
def paid_charge(customer, line, package, stripe_customer, add_card):
    """A card payment that succeeded at localstripe and is recorded in our ledger."""
    pm = add_card("4242424242424242")
    charge = make_charge(user=customer, line=line, package=package)
    outcome = gateways.charge_off_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=pm.id)
    return recording.record_outcome(charge_id=charge.pk, outcome=outcome)
