"""Choosing the default payment method can wake a failed renewal (a new default earns one immediate
attempt, docs/invariants.md), so every path that changes the default is rate limited the same way, a
state change is only ever a POST with a CSRF token (Stripe's redirect back after a bank or PayPal
approval is a GET: it shows a page with a button), and one method earns one attempt per renewal
cycle however often it is chosen. A declined SetupIntent reported by the page is cancelled at the
processor, so it cannot be confirmed again with the next card number, and counts."""

import stripe
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone
from djstripe.models import Customer as StripeCustomer

from payments import gateways
from payments.models import Charge
from renewals.models import Renewal
from tests.builders import make_charge, make_renewal, make_rule
from tests.payments.conftest import confirm_setup_as_browser, create_card
from tests.security.conftest import post_forms_without_token


def own_card(user, number: str = "4242424242424242", *, default: bool = False) -> str:
    customer = gateways.ensure_customer(user)
    pm = gateways.attach_payment_method(customer_id=customer.id, payment_method_id=create_card(number))
    if default:
        gateways.set_default_payment_method(customer_id=customer.id, payment_method_id=pm.id)
    return pm.id


def confirmed_setup_intent(client, number: str = "4242424242424242") -> str:
    start = client.post(reverse("payments:method_setup"), {"method_type": "card"}).json()
    assert confirm_setup_as_browser(start["client_secret"], number).status_code == 200
    return start["setup_intent_id"]


def default_of(user) -> str | None:
    return StripeCustomer.objects.get(subscriber=user).default_payment_method_id


def failed_cycle(user, line, package, *, tried: list[str]) -> Renewal:
    """The line's renewal whose attempts all failed, each with one of `tried`."""
    rule = make_rule(line=line, package=package)
    renewal = make_renewal(line=line, package=package, rule=rule, status=Renewal.Status.FAILED, failures=len(tried))
    for attempt, method in enumerate(tried, start=1):
        make_charge(
            user=user,
            line=line,
            package=package,
            renewal=renewal,
            attempt=attempt,
            status=Charge.Status.FAILED,
            payment_method_id=method,
            decline_kind=Charge.DeclineKind.HARD,
            failure_code="card_declined",
        )
    return renewal


def test_the_return_from_a_redirect_based_setup_changes_nothing_on_get(customer, customer_client, line, package):
    old = own_card(customer, default=True)
    renewal = failed_cycle(customer, line, package, tried=[old])
    setup_intent = confirmed_setup_intent(customer_client)
    url = reverse("payments:method_return") + f"?setup_intent={setup_intent}&make_default=1"
    page = customer_client.get(url)
    # A page with a button (a cross-site link or image cannot press it), the choice pre-filled.
    assert page.status_code == 200
    html = page.content.decode()
    assert f'value="{setup_intent}"' in html and "checked" in html
    assert not post_forms_without_token(html)
    assert default_of(customer) == old
    assert len(gateways.customer_for_user(customer).payment_methods.all()) == 1
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.FAILED
    # Pressing it is a POST with the token: saved, made default, and the failed renewal woken.
    response = customer_client.post(
        reverse("payments:method_finish"), {"setup_intent_id": setup_intent, "make_default": "on"}
    )
    assert response.status_code == 302
    assert default_of(customer) != old
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.DUE


def test_finishing_returning_and_removing_count_against_the_payment_method_limit(settings, customer, customer_client):
    settings.PAYMENTS_RATE_LIMITS = {**settings.PAYMENTS_RATE_LIMITS, "payment_method": "3/h/user,50/h/ip"}
    spare = own_card(customer)
    own_card(customer, default=True)
    answers = [
        customer_client.post(reverse("payments:method_finish"), {"setup_intent_id": "seti_nothing"}).status_code
        for _ in range(3)
    ]
    assert answers == [400, 400, 400]
    assert (
        customer_client.post(reverse("payments:method_finish"), {"setup_intent_id": "seti_nothing"}).status_code == 429
    )
    assert customer_client.post(reverse("payments:method_default", args=[spare])).status_code == 429
    assert customer_client.post(reverse("payments:method_remove", args=[spare]), {"replacement": ""}).status_code == 429
    assert len(gateways.customer_for_user(customer).payment_methods.all()) == 2


def test_a_method_earns_one_attempt_per_renewal_cycle_however_often_it_is_made_default(
    customer, customer_client, line, package
):
    first = own_card(customer, default=True)
    second = own_card(customer, "5555555555554444")
    renewal = failed_cycle(customer, line, package, tried=[first])
    # The same default again: nothing changes, nothing is woken.
    assert customer_client.post(reverse("payments:method_default", args=[first])).status_code == 302
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.FAILED
    # A method this cycle never tried: one immediate attempt.
    assert customer_client.post(reverse("payments:method_default", args=[second])).status_code == 302
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.DUE
    # ... which fails too. Switching back and forth between tried methods wakes nothing.
    make_charge(
        user=customer,
        line=line,
        package=package,
        renewal=renewal,
        attempt=2,
        status=Charge.Status.FAILED,
        payment_method_id=second,
        decline_kind=Charge.DeclineKind.HARD,
        failure_code="card_declined",
    )
    Renewal.objects.filter(pk=renewal.pk).update(status=Renewal.Status.FAILED, completed_at=timezone.now())
    for method in (first, second, first, second):
        assert customer_client.post(reverse("payments:method_default", args=[method])).status_code == 302
        assert default_of(customer) == method
        renewal.refresh_from_db()
        assert renewal.status == Renewal.Status.FAILED
    # Finishing the same SetupIntent again is no new method either.
    third = confirmed_setup_intent(customer_client, "4000056655665556")
    for _ in range(2):
        customer_client.post(reverse("payments:method_finish"), {"setup_intent_id": third, "make_default": "on"})
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.DUE


def test_each_declined_confirmation_the_page_reports_counts_against_the_limit(settings, customer, customer_client):
    """Counting intents alone lets a tester confirm one intent with card after card. The page
    reports every declined confirmation to method_finish, which counts it (and cancels the intent:
    localstripe already cancels a declined intent itself, so that part is not observable here)."""
    settings.PAYMENTS_RATE_LIMITS = {**settings.PAYMENTS_RATE_LIMITS, "payment_method": "3/h/user,50/h/ip"}
    start = customer_client.post(reverse("payments:method_setup"), {"method_type": "card"}).json()
    for number in ("4000000000000002", "4000000000000002"):
        confirm_setup_as_browser(start["client_secret"], number)
        response = customer_client.post(
            reverse("payments:method_finish"), {"setup_intent_id": start["setup_intent_id"]}
        )
        assert response.status_code == 400
        assert "Your card was declined" in response.content.decode()
    assert customer_client.post(reverse("payments:method_setup"), {"method_type": "card"}).status_code == 429
    assert not gateways.customer_for_user(customer).payment_methods.exists()
    intent = stripe.SetupIntent.retrieve(start["setup_intent_id"], api_key=django_settings.STRIPE_SECRET_KEY)
    assert intent["status"] == "canceled"
