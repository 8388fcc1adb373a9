"""The transaction history page, its CSV export and receipts; money formatting."""

import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import translation

from payments.models import Charge
from payments.money import format_money, plain_amount, to_decimal
from tests.builders import make_charge, make_line


def charge_at(when, **fields):
    charge = make_charge(**fields)
    Charge.objects.filter(pk=charge.pk).update(created_at=when)
    return Charge.objects.get(pk=charge.pk)


def csv_rows(response):
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_newest_first_and_paginated(customer, customer_client, line, package, django_assert_max_num_queries):
    base = datetime(2026, 11, 1, 12, tzinfo=ZoneInfo("UTC"))
    charges = [
        charge_at(base + timedelta(hours=i), user=customer, line=line, package=package, status=Charge.Status.SUCCEEDED)
        for i in range(25)
    ]
    with django_assert_max_num_queries(10):
        page1 = customer_client.get(reverse("payments:history"))
    ids = [row[0].pk for row in page1.context["rows"]]
    assert ids == [c.pk for c in reversed(charges)][:20]
    page2 = customer_client.get(reverse("payments:history"), {"page": 2})
    assert [row[0].pk for row in page2.context["rows"]] == [c.pk for c in reversed(charges)][20:]


def test_filters_by_line_status_and_dates_in_the_users_zone(customer, customer_client, line, package):
    customer.time_zone = "Asia/Shanghai"
    customer.save()
    other_line = make_line(owner=customer)
    shanghai = ZoneInfo("Asia/Shanghai")
    # 2026-11-10 23:30 in Shanghai is still 15:30 UTC on the 10th; 00:30 on the 11th is the 10th in UTC.
    late_10th = charge_at(
        datetime(2026, 11, 10, 23, 30, tzinfo=shanghai),
        user=customer,
        line=line,
        package=package,
        status=Charge.Status.SUCCEEDED,
    )
    early_11th = charge_at(
        datetime(2026, 11, 11, 0, 30, tzinfo=shanghai),
        user=customer,
        line=line,
        package=package,
        status=Charge.Status.FAILED,
        failure_code="card_declined",
    )
    other = charge_at(
        datetime(2026, 11, 10, 12, 0, tzinfo=shanghai),
        user=customer,
        line=other_line,
        package=package,
        status=Charge.Status.SUCCEEDED,
    )

    def ids(**params):
        return {row[0].pk for row in customer_client.get(reverse("payments:history"), params).context["rows"]}

    assert ids(line=line.pk) == {late_10th.pk, early_11th.pk}
    assert ids(status="failed") == {early_11th.pk}
    assert ids(date_from="2026-11-11", date_to="2026-11-11") == {early_11th.pk}
    assert ids(date_from="2026-11-10", date_to="2026-11-10") == {late_10th.pk, other.pk}
    # The CSV exports exactly the filtered rows, with times in the user's zone.
    rows = csv_rows(customer_client.get(reverse("payments:history_csv"), {"line": line.pk, "status": "succeeded"}))
    assert len(rows) == 2 and rows[1][0] == "2026-11-10T23:30:00+08:00"


def test_bad_filters_are_form_errors_not_500(customer_client, other_customer):
    theirs = make_line(owner=other_customer)
    response = customer_client.get(
        reverse("payments:history"),
        {"date_from": "2026-12-01", "date_to": "2026-11-01", "line": theirs.pk, "status": "nope"},
    )
    assert response.status_code == 200 and response.context["form"].errors
    assert customer_client.get(reverse("payments:history_csv"), {"date_from": "not a date"}).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {"date_to": "9999-12-31"},
        {"date_from": "0001-01-01"},
        {"date_from": "0001-01-01", "date_to": "9999-12-31"},
        {"date_from": "1999-12-31"},
    ],
)
@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/Los_Angeles"])
def test_dates_at_the_ends_of_the_calendar_are_a_form_error_not_a_500(
    customer, customer_client, line, package, query, zone
):
    customer.time_zone = zone
    customer.save(update_fields=["time_zone"])
    make_charge(user=customer, line=line, package=package, status=Charge.Status.SUCCEEDED)
    page = customer_client.get(reverse("payments:history"), query)
    assert page.status_code == 200
    assert "Enter a date from 2000-01-01 to 2999-12-31." in page.content.decode()
    export = customer_client.get(reverse("payments:history_csv"), query)
    assert export.status_code == 200 and len(csv_rows(export)) == 2


def test_csv_neutralises_formulas(customer, customer_client, line, package):
    make_charge(
        user=customer,
        line=line,
        package=package,
        status=Charge.Status.FAILED,
        failure_code='=HYPERLINK("x")',
        payment_method_summary="=cmd|' /C calc'!A0",
    )
    row = csv_rows(customer_client.get(reverse("payments:history_csv")))[1]
    assert row[6].startswith("'=")
    assert all(not cell.startswith("=") for cell in row)


def test_receipt_is_printable_and_only_for_money_taken(customer, customer_client, line, package):
    paid = make_charge(
        user=customer,
        line=line,
        package=package,
        status=Charge.Status.SUCCEEDED,
        payment_intent_id="pi_paid",
        payment_method_summary="Visa •••• 4242",
    )
    pending = make_charge(user=customer, line=line, package=package)
    html = customer_client.get(reverse("payments:receipt", args=[paid.pk])).content.decode()
    assert (
        "payments/payments.css" in html
        and 'id="print-receipt"' in html
        and "CN¥98.00" in html
        and "Visa •••• 4242" in html
        and "pi_paid" in html
    )
    assert customer_client.get(reverse("payments:receipt", args=[pending.pk])).status_code == 404


def test_history_shows_only_the_customers_own_charges(customer, customer_client, other_customer, package):
    theirs = make_charge(
        user=other_customer, line=make_line(owner=other_customer), package=package, status=Charge.Status.SUCCEEDED
    )
    assert customer_client.get(reverse("payments:history")).context["rows"] == []
    assert len(csv_rows(customer_client.get(reverse("payments:history_csv")))) == 1
    assert customer_client.get(reverse("payments:receipt", args=[theirs.pk])).status_code == 404


@pytest.mark.parametrize("name", ["payments:history", "payments:history_csv"])
def test_anonymous_goes_to_login(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_history_in_chinese(customer, customer_client, line, package):
    make_charge(user=customer, line=line, package=package, status=Charge.Status.SUCCEEDED)
    html = customer_client.get(reverse("payments:history"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "交易记录" in html and "成功" in html


# --- money ---------------------------------------------------------------------------------------


@pytest.mark.pure
def test_amounts_whose_float_would_be_wrong_are_exact():
    # 0.1 + 0.2 != 0.3 in floats; in minor units it is 10 + 20 = 30.
    assert 0.1 + 0.2 != 0.3
    assert format_money(10 + 20, "USD") == "$0.30"
    assert plain_amount(10 + 20, "USD") == "0.30"
    # 2**53 + 1 cents cannot be represented as a float at all.
    big = 2**53 + 1
    assert float(big) / 100 != Decimal(big) / 100
    assert plain_amount(big, "CNY") == "90071992547409.93"
    assert to_decimal(1015, "EUR") == Decimal("10.15")  # float 10.15 is 10.1499999...
    assert format_money(1015, "EUR") == "€10.15"


@translation.override("en")
@pytest.mark.pure
def test_zero_and_three_decimal_currencies():
    assert format_money(1200, "JPY") == "¥1,200"
    assert plain_amount(1200, "JPY") == "1200"
    assert format_money(1234567, "KWD") == "KWD\u00a01,234.567"
    assert format_money(5, "EUR") == "€0.05"
    assert format_money(0, "CNY") == "CN¥0.00"


@pytest.mark.pure
def test_money_follows_the_language():
    with translation.override("zh-hans"):
        assert format_money(9800, "CNY") == "¥98.00"


def test_jpy_purchase_amount_reaches_stripe_unscaled(customer, line, stripe_customer, add_card):
    from payments import gateways
    from tests.builders import make_package

    jpy = make_package(price_minor=1200, currency="JPY")
    pm = add_card("4242424242424242")
    charge = make_charge(user=customer, line=line, package=jpy)
    outcome = gateways.charge_off_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=pm.id)
    import stripe

    intent = stripe.PaymentIntent.retrieve(outcome.payment_intent_id)
    assert (intent["amount"], intent["currency"]) == (1200, "jpy")
