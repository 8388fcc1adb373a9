"""The catalogue's figures as people read them: prices in the active language's currency format,
validity in days (plural-aware)."""

from django import template
from django.utils.translation import ngettext

from accounts.prices import format_price

register = template.Library()


@register.filter
def price(package) -> str:
    """A package's price: "$18.00" in English, "US$18.00" in Chinese (accounts.prices)."""
    return format_price(package.price_minor, package.currency)


@register.filter
def validity(days) -> str:
    count = int(days)
    return ngettext("%(count)d day", "%(count)d days", count) % {"count": count}
