"""Money as the ledger keeps it (integer minor units + ISO 4217 code) turned into text at the
edge: pages, CSV, receipts. Decimal only; a float never touches an amount."""

from decimal import Decimal

from django.utils import formats

# The exponents are ISO 4217's, kept in accounts (the lowest package) so that the catalogue's
# prices and the ledger's amounts agree.
from accounts.prices import CURRENCY_EXPONENTS


def currency_exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS.get((currency or "").upper(), 2)


def to_decimal(amount_minor: int, currency: str) -> Decimal:
    """98_00 CNY -> Decimal('98.00'); 1200 JPY -> Decimal('1200')."""
    exponent = currency_exponent(currency)
    return Decimal(int(amount_minor)).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def plain_amount(amount_minor: int, currency: str) -> str:
    """Machine-readable amount for CSV: '98.00', '1200', '-0.05'."""
    return str(to_decimal(amount_minor, currency))


def format_money(amount_minor: int, currency: str, *, use_l10n: bool = True) -> str:
    """'CNY 1,234.56' in the active language's number format."""
    value = to_decimal(amount_minor, currency)
    number = formats.number_format(
        value, decimal_pos=currency_exponent(currency), use_l10n=use_l10n, force_grouping=True
    )
    return f"{currency.upper()} {number}"


def to_minor(amount: Decimal, currency: str) -> int:
    """Decimal('98.00') CNY -> 9800. Callers validate the decimal places first."""
    return int(amount.scaleb(currency_exponent(currency)).to_integral_value())
