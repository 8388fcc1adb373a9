"""Money leaves the engine as integer minor units; this turns it into text at the edge
(templates, emails) without ever going through a float."""
from decimal import Decimal

# ISO 4217 currencies whose minor unit is not a hundredth.
MINOR_UNIT_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}


def format_money(amount_minor: int, currency: str) -> str:
    exponent = MINOR_UNIT_EXPONENTS.get(currency.upper(), 2)
    value = Decimal(int(amount_minor)).scaleb(-exponent)
    return f"{currency.upper()} {value:,.{exponent}f}"
