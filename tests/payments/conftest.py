"""Payments fixtures: customers and cards made in the real localstripe the suite runs against.
`add_card` plays the browser's part (Stripe.js would create the method from the number); the
number goes straight to localstripe, never through our code."""
import itertools
import uuid

import pytest
import stripe
from django.conf import settings

from payments import gateways
from payments.models import Charge

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
            customer_id=stripe_customer.id, payment_method_id=create_card(number, exp_month=exp_month, exp_year=exp_year)
        )
        if default:
            gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=pm.id)
        return pm

    return _add


def make_charge(*, user, line=None, package=None, renewal=None, attempt=None, amount_minor=None, currency=None, **fields) -> Charge:
    return Charge.objects.create(
        user=user,
        line=line,
        package=package,
        renewal=renewal,
        attempt=attempt,
        purpose=Charge.Purpose.RENEWAL if renewal else Charge.Purpose.PURCHASE,
        amount_minor=amount_minor if amount_minor is not None else (package.price_minor if package else 9800),
        currency=currency or (package.currency if package else "CNY"),
        idempotency_key=f"test-{uuid.uuid4()}",
        **fields,
    )
