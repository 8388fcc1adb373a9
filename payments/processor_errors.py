"""Every error the payment processor can give a customer, as a sentence in their language: the one
mapping the card form (through payments.js), the pay-now page and the history use. Keys are
Stripe's documented error `code`s, card `decline_code`s and error `type`s
(stripe.com/docs/error-codes, stripe.com/docs/declines/codes); the processor's own English
message is never shown. docs/pages.md."""

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

_CHECK_CARD = _("Check the card number, the expiry date (MM/YY) and the security code, then try again.")
_OTHER_CARD = _("Your card was declined. Please use another card.")
_CALL_BANK = _("Your bank declined the card. Please call your bank or use another card.")

# Stripe's error `code` (card errors, and Stripe.js's own checks of the card field).
CODES: dict[str, Promise] = {
    "card_declined": _OTHER_CARD,
    "expired_card": _("Your card has expired. Please use another card."),
    "incorrect_cvc": _("The card's security code is incorrect."),
    "invalid_cvc": _("The card's security code is incorrect."),
    "incomplete_cvc": _("Enter the card's security code (3 or 4 digits on the card)."),
    "incorrect_number": _("The card number is incorrect."),
    "invalid_number": _("The card number is incorrect."),
    "incomplete_number": _("The card number is incomplete."),
    "invalid_expiry_month": _("The expiry month is not valid: enter it as MM/YY, for example 08/29."),
    "invalid_expiry_year": _("The expiry year is not valid: enter it as MM/YY, for example 08/29."),
    "invalid_expiry_year_past": _("The expiry date is in the past. Please check it or use another card."),
    "incomplete_expiry": _("Enter the expiry date as MM/YY, for example 08/29."),
    "incorrect_zip": _("The postal code does not match the card."),
    "postal_code_invalid": _("The postal code does not match the card."),
    "processing_error": _("The card could not be processed. Nothing was charged; please try again."),
    "rate_limit": _("Too many attempts at once. Please wait a minute and try again."),
    "card_decline_rate_limit_exceeded": _(
        "This card was declined too many times. Please wait a day or use another card."
    ),
    "authentication_required": _("Your bank asks you to confirm this payment."),
    "payment_intent_authentication_failure": _("Your bank's authentication was not completed."),
    "setup_intent_authentication_failure": _("Your bank's authentication was not completed. Nothing was saved."),
    "setup_intent_unexpected_state": _("This card form has expired. Please reload the page and try again."),
    "payment_method_unactivated": _("This payment method is not available. Please use another one."),
    "insufficient_funds": _("Your card has insufficient funds."),
    "superseded": _("Replaced by a new payment."),
    "not_sent": _("The payment processor never received this payment."),
}

# The card issuer's `decline_code` that comes with card_declined: more precise when known.
DECLINE_CODES: dict[str, Promise] = {
    "insufficient_funds": _("Your card has insufficient funds. Nothing was charged; please use another card."),
    "lost_card": _OTHER_CARD,
    "stolen_card": _OTHER_CARD,
    "pickup_card": _OTHER_CARD,
    "fraudulent": _OTHER_CARD,
    "generic_decline": _OTHER_CARD,
    "do_not_honor": _CALL_BANK,
    "call_issuer": _CALL_BANK,
    "restricted_card": _CALL_BANK,
    "transaction_not_allowed": _CALL_BANK,
    "security_violation": _CALL_BANK,
    "card_not_supported": _("This card does not support this kind of payment. Please use another card."),
    "currency_not_supported": _("This card does not support payments in this currency. Please use another card."),
    "card_velocity_exceeded": _("Your card's limit was reached. Please use another card or call your bank."),
    "withdrawal_count_limit_exceeded": _("Your card's limit was reached. Please use another card or call your bank."),
    "expired_card": CODES["expired_card"],
    "incorrect_cvc": CODES["incorrect_cvc"],
    "incorrect_number": CODES["incorrect_number"],
    "incorrect_zip": CODES["incorrect_zip"],
    "processing_error": CODES["processing_error"],
    "try_again_later": _("Your bank could not answer now. Please try again in a few minutes."),
    "issuer_not_available": _("Your bank could not answer now. Please try again in a few minutes."),
    "reenter_transaction": _("Your bank could not answer now. Please try again in a few minutes."),
    "authentication_required": CODES["authentication_required"],
    "testmode_decline": _OTHER_CARD,
    "live_mode_test_card": _("This is a test card: please use a real card."),
}

# Stripe's error `type`, when the code says nothing we know (localstripe's "Bad request", for one,
# is an invalid_request_error without a code: almost always a mistyped card detail).
TYPES: dict[str, Promise] = {
    "card_error": _OTHER_CARD,
    "validation_error": _CHECK_CARD,
    "invalid_request_error": _CHECK_CARD,
    "rate_limit_error": CODES["rate_limit"],
    "api_connection_error": _("The payment processor did not answer. Nothing was saved; please try again."),
    "api_error": _("The payment processor had a problem. Nothing was charged; please try again later."),
    "authentication_error": _("The payment processor had a problem. Nothing was charged; please try again later."),
}

FALLBACK = _("The payment could not be completed. Nothing was charged; please try again or use another card.")


def customer_message(code: str = "", decline_code: str = "", error_type: str = "") -> str:
    """The sentence for a processor error: by decline code, then code, then type."""
    for table, key in ((DECLINE_CODES, decline_code), (CODES, code), (TYPES, error_type)):
        if key and key in table:
            return str(table[key])
    return str(FALLBACK)


def for_browser() -> dict[str, object]:
    """The same mapping in the page's language, for payments.js (json_script on the page)."""
    return {
        "codes": {key: str(value) for key, value in CODES.items()},
        "declines": {key: str(value) for key, value in DECLINE_CODES.items()},
        "types": {key: str(value) for key, value in TYPES.items()},
        "fallback": str(FALLBACK),
    }
