"""Prices as people read them: integer minor units + ISO 4217 code turned into text in the active
language with Babel (CLDR): "$18.00" in English, "US$18.00" and "¥18.00" in Chinese. The minor-unit
exponents are ISO 4217's (Stripe's amounts use the same), kept here because accounts is the lowest
package: payments.money reads the same table. docs/catalogue.md."""

import re
from decimal import Decimal

from babel import Locale
from babel.numbers import parse_pattern

from accounts.locale_format import babel_locale

_LETTERS_THEN_DIGIT = re.compile(r"([A-Za-z])(\d)")

# ISO 4217 minor-unit exponents that are not 2. CLDR's own (Babel's get_currency_precision) differ
# for a few (HUF, TWD: cash digits), so the ledger's exponent decides, not the locale data.
CURRENCY_EXPONENTS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}


def currency_exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS.get((currency or "").upper(), 2)


def to_decimal(amount_minor: int, currency: str) -> Decimal:
    """98_00 CNY -> Decimal('98.00'); 1200 JPY -> Decimal('1200')."""
    exponent = currency_exponent(currency)
    return Decimal(int(amount_minor)).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def format_price(amount_minor: int, currency: str, language: str | None = None) -> str:
    """The amount in the language's currency format (the active one unless given), with the ISO
    exponent's decimals, not Babel's idea of the currency: 1800 USD is "$18.00" in English and
    "US$18.00" in Chinese, 1800 CNY "CN¥18.00" and "¥18.00". The one money formatter of the
    catalogue and the customer's pages (payments.money.format_money)."""
    locale = Locale.parse(babel_locale(language))
    pattern = parse_pattern(locale.currency_formats["standard"])
    exponent = currency_exponent(currency)
    pattern.frac_prec = (exponent, exponent)
    text = pattern.apply(to_decimal(amount_minor, currency), locale, currency=currency.upper(), currency_digits=False)
    # CLDR's currencySpacing, which Babel does not apply: a symbol that is letters ("KWD") is
    # kept off the digits by a no-break space ("KWD 1.234"); "CN¥98.00" stays as it is.
    return _LETTERS_THEN_DIGIT.sub("\\1\u00a0\\2", text)
