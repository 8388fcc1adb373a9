"""{{ value|local_datetime }}, {{ value|local_datetime:"short" }}, {{ value|local_date:"short" }}:
dates by Babel in the customer's language and zone (accounts/locale_format.py)."""

from django import template

from .. import locale_format

register = template.Library()


@register.filter
def local_datetime(value, length: str = "medium") -> str:
    return locale_format.format_datetime(value, length or "medium")


@register.filter
def local_date(value, length: str = "medium") -> str:
    return locale_format.format_date(value, length or "medium")
