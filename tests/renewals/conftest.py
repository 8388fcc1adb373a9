"""Renewal fixtures: a line with an enabled rule, and a small policy so retries are minutes apart."""

import pytest

from renewals.models import RetryPolicy
from tests.builders import MB, make_rule


@pytest.fixture
def policy(db):
    policy = RetryPolicy.current()
    policy.retry_delays_minutes = [60, 360, 1440]
    policy.alert_after_failures = 3
    policy.save()
    return policy


@pytest.fixture
def low_line(line):
    """The customer's line, 100 MB left: below a 500 MB threshold."""
    line.data_remaining_bytes = 100 * MB
    line.save()
    return line


@pytest.fixture
def rule(low_line, package, policy):
    return make_rule(line=low_line, package=package)


@pytest.fixture
def add_card(customer):
    """add_card(number) -> the customer's new default method, made in the real localstripe the way
    the browser would (the number goes to localstripe only)."""
    from payments import gateways
    from tests.payments.conftest import create_card

    def _add(number: str = "4242424242424242", *, default: bool = True):
        stripe_customer = gateways.ensure_customer(customer)
        pm = gateways.attach_payment_method(customer_id=stripe_customer.id, payment_method_id=create_card(number))
        if default:
            gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=pm.id)
        return pm

    return _add


def payment_intents_for(renewal) -> list:
    """Every PaymentIntent localstripe holds for this renewal: the processor's own list, not ours."""
    import stripe
    from django.conf import settings

    return [
        pi
        for pi in stripe.PaymentIntent.list(limit=100, api_key=settings.STRIPE_SECRET_KEY).auto_paging_iter()
        if (pi["metadata"] or {}).get("renewal_id") == str(renewal.pk)
    ]


def send_owed_emails() -> list[int]:
    """What the notice task does after a commit (accounts.send_notices), run here for renewal emails:
    the charge path only writes the notice rows."""
    from renewals import notifications

    return notifications.send_unsent_notices()
