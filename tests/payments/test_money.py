"""Money at the edge, with no service: integer minor units turned into exact decimals by the
currency's exponent and back, and CSV cells a spreadsheet cannot read as formulas."""

from decimal import Decimal

import pytest
from django.utils import translation

from payments.money import format_money, plain_amount, to_decimal, to_minor
from payments.views import _csv_cell

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(
    ("minor", "currency", "decimal"),
    [
        (9800, "CNY", Decimal("98.00")),
        (1200, "JPY", Decimal("1200")),
        (1234, "KWD", Decimal("1.234")),
        (-5, "eur", Decimal("-0.05")),
        (10**15 + 1, "USD", Decimal("10000000000000.01")),
    ],
)
def test_minor_units_become_exact_decimals_by_the_currency_and_come_back_unchanged(minor, currency, decimal):
    assert to_decimal(minor, currency) == decimal
    assert to_minor(decimal, currency) == minor


def test_csv_amounts_are_plain_and_page_amounts_follow_the_language():
    assert plain_amount(123456, "CNY") == "1234.56"
    with translation.override("en"):
        assert format_money(123456, "cny") == "CN¥1,234.56"
    with translation.override("zh-hans"):
        assert format_money(123456, "cny") == "¥1,234.56"
        assert format_money(500, "USD") == "US$5.00"


@pytest.mark.parametrize("text", ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_a_csv_cell_that_a_spreadsheet_would_run_as_a_formula_is_quoted(text):
    assert _csv_cell(text) == "'" + text


@pytest.mark.parametrize(("value", "cell"), [("Visa 4242", "Visa 4242"), (None, ""), (12, "12")])
def test_an_ordinary_csv_cell_is_left_as_it_is(value, cell):
    assert _csv_cell(value) == cell
