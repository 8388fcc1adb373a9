"""Every processor error becomes a sentence in the customer's language (payments/processor_errors.py)."""

import pytest
from django.utils import translation

from payments import processor_errors

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(
    ("code", "decline_code", "error_type", "expected"),
    [
        ("card_declined", "insufficient_funds", "card_error", "insufficient funds"),
        ("card_declined", "do_not_honor", "card_error", "call your bank"),
        ("card_declined", "", "card_error", "Your card was declined. Please use another card."),
        ("expired_card", "", "card_error", "has expired"),
        ("incorrect_cvc", "", "card_error", "security code is incorrect"),
        ("invalid_expiry_year", "", "card_error", "MM/YY"),
        ("processing_error", "", "card_error", "could not be processed"),
        ("rate_limit", "", "rate_limit_error", "wait a minute"),
        ("authentication_required", "", "card_error", "confirm this payment"),
        (
            "",
            "",
            "invalid_request_error",
            "Check the card number, the expiry date (MM/YY)",
        ),  # localstripe's "Bad request"
        ("something_new", "", "", "could not be completed"),
    ],
)
def test_each_error_has_a_sentence(code, decline_code, error_type, expected):
    assert expected in processor_errors.customer_message(code, decline_code, error_type)


def test_every_sentence_is_translated_into_chinese():
    with translation.override("zh-hans"):
        table = processor_errors.for_browser()
    english = processor_errors.for_browser()
    for group in ("codes", "declines", "types"):
        for key, sentence in table[group].items():
            assert sentence != english[group][key], f"{group}.{key} is not translated"
    assert table["fallback"] != english["fallback"]
