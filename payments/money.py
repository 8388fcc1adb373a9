"""Money as the ledger keeps it (integer minor units + ISO 4217 code) turned into text at the
edge: pages, CSV, receipts. Decimal only; a float never touches an amount."""

from decimal import Decimal

from babel import Locale
from babel.numbers import parse_pattern

from accounts.locale_format import babel_locale

# The exponents and the customer-facing format live in accounts (the lowest package), so that the
# catalogue's prices and the ledger's amounts agree.
from accounts.prices import currency_exponent, format_price, to_decimal


def plain_amount(amount_minor: int, currency: str) -> str:
    """Machine-readable amount for CSV: '98.00', '1200', '-0.05'."""
    return str(to_decimal(amount_minor, currency))


def format_money(amount_minor: int, currency: str) -> str:
    """By Babel in the active language's locale (docs/locale-formats.md): 9800 CNY is '¥98.00'
    in Chinese and 'CN¥98.00' in English, 500 USD '$5.00' / 'US$5.00'."""
    return format_price(amount_minor, currency)


def format_money_code(amount_minor: int, currency: str) -> str:
    """For operators (the console, docs/locale-formats.md): the ISO code, never a symbol, then the
    amount in the active locale's digits: 'CNY 98.00', 'JPY 1,200', 'USD 5.00'. A symbol is
    ambiguous across the ledger's currencies ('¥' is CNY in Chinese and JPY in English); the
    customer's pages use `format_money`."""
    locale = Locale.parse(babel_locale())
    pattern = parse_pattern(locale.decimal_formats[None])
    digits = currency_exponent(currency)
    pattern.frac_prec = (digits, digits)
    number = pattern.apply(to_decimal(amount_minor, currency), locale)
    return f"{currency.upper()} {number}"


def to_minor(amount: Decimal, currency: str) -> int:
    """Decimal('98.00') CNY -> 9800. Callers validate the decimal places first."""
    return int(amount.scaleb(currency_exponent(currency)).to_integral_value())
