"""Binding, listing, defaulting and removing payment methods, through our pages, against the
real localstripe."""

from datetime import date

import pytest
import stripe
from django.urls import reverse
from djstripe.models import PaymentMethod

from payments import gateways
from payments.selectors import card_expiry_flags, payment_methods_for_user
from renewals.models import RenewalRule
from tests.builders import make_line, make_package
from tests.payments.conftest import confirm_sepa_setup_as_browser


def remote_methods(customer_id: str) -> list[str]:
    return [pm["id"] for pm in stripe.PaymentMethod.list(customer=customer_id, type="card")["data"]]


def test_add_a_card_it_is_listed_as_default_credit_card(customer, customer_client, bind_card):
    browser, finish = bind_card("4242424242424242")
    assert browser.status_code == 200 and browser.json()["status"] == "succeeded"
    assert finish.status_code == 302
    page = customer_client.get(reverse("payments:methods"))
    html = page.content.decode()
    assert "Visa •••• 4242" in html and "Default" in html and "Credit card" in html and "12/2034" in html
    assert "4242424242424242" not in html
    customer_id = gateways.customer_for_user(customer).id
    (method,) = payment_methods_for_user(customer)
    assert method.is_default and method.funding == "credit"
    # In the processor too: attached to this customer and its default.
    assert remote_methods(customer_id) == [method.id]
    assert stripe.Customer.retrieve(customer_id)["invoice_settings"]["default_payment_method"] == method.id


def test_declined_card_on_attach_is_a_form_error_and_nothing_is_saved(customer, customer_client, bind_card):
    browser, finish = bind_card("4000000000000002")
    assert browser.status_code == 402  # the 'browser' saw the decline
    assert finish.status_code == 400
    assert "Your card was declined. Nothing was saved" in finish.content.decode()
    assert payment_methods_for_user(customer) == []
    assert not PaymentMethod.objects.filter(customer__subscriber=customer).exists()
    assert remote_methods(gateways.customer_for_user(customer).id) == []


def test_a_setup_intent_of_another_customer_cannot_be_finished(customer_client, other_customer, client):
    from django.test import Client

    mallory = Client()
    mallory.force_login(other_customer)
    start = mallory.post(reverse("payments:method_setup"), {"method_type": "card"}).json()
    from tests.payments.conftest import confirm_setup_as_browser

    confirm_setup_as_browser(start["client_secret"])
    response = customer_client.post(reverse("payments:method_finish"), {"setup_intent_id": start["setup_intent_id"]})
    assert response.status_code == 400
    assert not PaymentMethod.objects.filter(customer__isnull=False).exists()


def test_add_sepa_debit(customer, customer_client, settings):
    settings.DEFAULT_CURRENCY = "EUR"  # a customer of the euro market (no line yet)
    start = customer_client.post(reverse("payments:method_setup"), {"method_type": "sepa_debit"}).json()
    assert confirm_sepa_setup_as_browser(start["client_secret"]).status_code == 200
    finish = customer_client.post(reverse("payments:method_finish"), {"setup_intent_id": start["setup_intent_id"]})
    assert finish.status_code == 302
    (method,) = payment_methods_for_user(customer)
    assert method.type == "sepa_debit" and method.summary == "SEPA Direct Debit •••• 3000"
    assert "SEPA Direct Debit •••• 3000" in customer_client.get(reverse("payments:methods")).content.decode()


def test_set_default(customer, customer_client, bind_card):
    bind_card("4242424242424242")
    bind_card("5555555555554444", make_default=False)
    first, second = sorted(payment_methods_for_user(customer), key=lambda m: not m.is_default)
    assert first.is_default and not second.is_default
    response = customer_client.post(reverse("payments:method_default", args=[second.id]))
    assert response.status_code == 302
    assert gateways.default_payment_method_id(customer) == second.id
    assert (
        stripe.Customer.retrieve(gateways.customer_for_user(customer).id)["invoice_settings"]["default_payment_method"]
        == second.id
    )


def test_remove_a_method_detaches_it(customer, customer_client, bind_card):
    bind_card("4242424242424242")
    (method,) = payment_methods_for_user(customer)
    assert customer_client.get(reverse("payments:method_remove", args=[method.id])).status_code == 200
    response = customer_client.post(reverse("payments:method_remove", args=[method.id]))
    assert response.status_code == 302
    assert payment_methods_for_user(customer) == []
    assert stripe.PaymentMethod.retrieve(method.id)["customer"] is None
    # localstripe keeps a detached default: we cleared it.
    assert gateways.default_payment_method_id(customer) is None
    assert not stripe.Customer.retrieve(gateways.customer_for_user(customer).id)["invoice_settings"][
        "default_payment_method"
    ]


def test_removing_a_method_a_renewal_rule_uses_asks_for_a_replacement(
    customer, customer_client, bind_card, line, package
):
    bind_card("4242424242424242")
    bind_card("5555555555554444", make_default=False)
    default, other = sorted(payment_methods_for_user(customer), key=lambda m: not m.is_default)
    rule = RenewalRule.objects.create(
        line=line, enabled=True, package=package, trigger_data_below_mb=500, payment_method_id=default.id
    )
    page = customer_client.get(reverse("payments:method_remove", args=[default.id]))
    assert "Choose the method they should charge instead" in page.content.decode()
    refused = customer_client.post(reverse("payments:method_remove", args=[default.id]))
    assert refused.status_code == 400
    assert "Choose a replacement" in refused.content.decode()
    assert {m.id for m in payment_methods_for_user(customer)} == {default.id, other.id}
    done = customer_client.post(reverse("payments:method_remove", args=[default.id]), {"replacement": other.id})
    assert done.status_code == 302
    rule.refresh_from_db()
    assert rule.payment_method_id == other.id
    assert [m.id for m in payment_methods_for_user(customer)] == [other.id]
    assert gateways.default_payment_method_id(customer) == other.id


def test_a_rule_on_the_default_method_also_needs_a_replacement(customer, customer_client, bind_card, line, package):
    bind_card("4242424242424242")
    (default,) = payment_methods_for_user(customer)
    RenewalRule.objects.create(
        line=line, enabled=True, package=package, trigger_data_below_mb=500, payment_method_id=""
    )
    assert customer_client.post(reverse("payments:method_remove", args=[default.id])).status_code == 400
    assert [m.id for m in payment_methods_for_user(customer)] == [default.id]


def test_expired_and_expiring_cards_are_flagged(customer, customer_client, bind_card):
    today = date.today()
    bind_card("4242424242424242", exp_month=1, exp_year=2020)
    bind_card("5555555555554444", exp_month=today.month, exp_year=today.year, make_default=False)
    bind_card("4000056655665556", exp_month=12, exp_year=2034, make_default=False)
    flags = {(m.exp_year, m.exp_month): (m.expired, m.expiring_soon) for m in payment_methods_for_user(customer)}
    assert flags[(2020, 1)] == (True, False)
    assert flags[(today.year, today.month)] == (False, True)
    assert flags[(2034, 12)] == (False, False)
    html = customer_client.get(reverse("payments:methods")).content.decode()
    assert "Expired" in html and "Expires soon" in html


@pytest.mark.parametrize(
    "today, expected",
    [
        (date(2026, 10, 31), (False, False)),
        (date(2026, 11, 30), (False, False)),  # a card of 12/2026 is valid through 31 Dec: 31 days away
        (date(2026, 12, 1), (False, True)),  # 30 days away
        (date(2026, 12, 31), (False, True)),  # its last valid day
        (date(2027, 1, 1), (True, False)),
    ],
)
@pytest.mark.pure
def test_expiry_flag_boundaries(today, expected):
    assert card_expiry_flags(12, 2026, today) == expected


def test_debit_cards_are_labelled_from_funding(customer, customer_client, bind_card):
    # localstripe makes every card 'credit'; the label follows Stripe's card.funding.
    bind_card("4242424242424242")
    row = PaymentMethod.objects.get(customer__subscriber=customer)
    row.stripe_data["card"]["funding"] = "debit"
    row.save()
    assert "Debit card" in customer_client.get(reverse("payments:methods")).content.decode()


def test_paypal_is_not_offered_unless_enabled(customer, customer_client, settings):
    settings.STRIPE_PAYPAL_ENABLED = False
    assert 'value="paypal"' not in customer_client.get(reverse("payments:methods")).content.decode()
    response = customer_client.post(reverse("payments:method_setup"), {"method_type": "paypal"})
    assert response.status_code == 400 and "not available" in response.json()["error"]


def test_paypal_enabled_but_unavailable_at_the_processor_is_a_clear_error(
    customer, customer_client, settings, unresponsive_stripe
):
    # The processor does not answer for PayPal (localstripe emulates PayPal: tests/payments/test_paypal.py).
    settings.STRIPE_PAYPAL_ENABLED = True
    settings.DEFAULT_CURRENCY = "USD"  # PayPal is offered for USD (PAYMENT_METHOD_TYPES_BY_CURRENCY)
    assert 'value="paypal"' in customer_client.get(reverse("payments:methods")).content.decode()
    response = customer_client.post(reverse("payments:method_setup"), {"method_type": "paypal"})
    assert response.status_code in (400, 502)
    assert "PayPal is not available" in response.json()["error"]
    assert payment_methods_for_user(customer) == []


def test_processor_time_out_while_binding_saves_nothing(customer, customer_client, unresponsive_stripe):
    response = customer_client.post(reverse("payments:method_setup"), {"method_type": "card"})
    assert response.status_code == 502
    assert "did not answer" in response.json()["error"]
    assert payment_methods_for_user(customer) == []


def test_another_customers_method_is_a_404(customer, customer_client, other_customer):
    from django.test import Client

    mallory = Client()
    mallory.force_login(other_customer)
    start = mallory.post(reverse("payments:method_setup"), {"method_type": "card"}).json()
    from tests.payments.conftest import confirm_setup_as_browser

    confirm_setup_as_browser(start["client_secret"])
    mallory.post(reverse("payments:method_finish"), {"setup_intent_id": start["setup_intent_id"]})
    (theirs,) = payment_methods_for_user(other_customer)
    assert customer_client.get(reverse("payments:method_remove", args=[theirs.id])).status_code == 404
    assert customer_client.post(reverse("payments:method_remove", args=[theirs.id])).status_code == 404
    assert customer_client.post(reverse("payments:method_default", args=[theirs.id])).status_code == 404
    assert stripe.PaymentMethod.retrieve(theirs.id)["customer"] == gateways.customer_for_user(other_customer).id


@pytest.mark.parametrize("name, args", [("payments:methods", []), ("payments:method_remove", ["pm_x"])])
def test_anonymous_is_sent_to_login(client, db, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_methods_page_queries_do_not_grow_with_methods(
    customer, customer_client, bind_card, django_assert_max_num_queries
):
    for number in ("4242424242424242", "5555555555554444", "4000056655665556"):
        bind_card(number, make_default=False)
    with django_assert_max_num_queries(8):
        assert customer_client.get(reverse("payments:methods")).status_code == 200


def test_adding_a_method_from_the_buy_page_returns_there_and_never_elsewhere(customer_client, line):
    from tests.payments.conftest import confirm_setup_as_browser

    buy_url = reverse("payments:buy", args=[line.pk])
    page = customer_client.get(reverse("payments:methods"), {"next": buy_url}).content.decode()
    assert f'name="next" value="{buy_url}"' in page
    for next_url, expected in ((buy_url, buy_url), ("https://evil.example/", reverse("payments:methods"))):
        start = customer_client.post(reverse("payments:method_setup"), {"method_type": "card"}).json()
        confirm_setup_as_browser(start["client_secret"])
        finish = customer_client.post(
            reverse("payments:method_finish"), {"setup_intent_id": start["setup_intent_id"], "next": next_url}
        )
        assert finish["Location"] == expected


def test_a_cny_customer_is_never_offered_sepa_and_cannot_start_it(customer, customer_client, settings):
    settings.STRIPE_PAYPAL_ENABLED = True
    make_line(owner=customer, package=make_package(currency="CNY"))
    html = customer_client.get(reverse("payments:methods")).content.decode()
    assert 'value="card"' in html and 'value="sepa_debit"' not in html and 'value="paypal"' not in html
    response = customer_client.post(reverse("payments:method_setup"), {"method_type": "sepa_debit"})
    assert response.status_code == 400 and "not available" in response.json()["error"]


def test_the_operator_chooses_the_types_per_currency(customer, customer_client, settings):
    make_line(owner=customer, package=make_package(currency="EUR", price_minor=900))
    assert 'value="sepa_debit"' in customer_client.get(reverse("payments:methods")).content.decode()
    settings.PAYMENT_METHOD_TYPES_BY_CURRENCY = {"EUR": ["card"]}
    assert 'value="sepa_debit"' not in customer_client.get(reverse("payments:methods")).content.decode()
    # A customer paying in CNY and EUR is offered what pays both: a SEPA mandate cannot pay CNY.
    settings.PAYMENT_METHOD_TYPES_BY_CURRENCY = {"EUR": ["card", "sepa_debit"], "CNY": ["card"]}
    make_line(owner=customer, package=make_package(currency="CNY"))
    assert 'value="sepa_debit"' not in customer_client.get(reverse("payments:methods")).content.decode()
