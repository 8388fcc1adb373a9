"""Template helpers for renewals: money from minor units, and the renewal banners a line page shows."""

from django import template

from payments.money import format_money

from .. import selectors
from ..notifications import pay_now_path

register = template.Library()


@register.filter
def money(amount_minor, currency: str) -> str:
    if amount_minor is None:
        return ""
    return format_money(amount_minor, currency)


@register.inclusion_tag("renewals/_banners.html")
def renewal_banners(user, line=None):
    """Banners for the customer's renewals that need saying: `{% renewal_banners user line %}`."""
    banners = selectors.banners_for_user(user, line=line)
    return {"banners": [(renewal, pay_now_path(renewal)) for renewal in banners]}
