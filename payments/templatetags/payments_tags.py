from django import template

from payments.money import format_money

register = template.Library()


@register.simple_tag
def money(amount_minor, currency):
    """{% money charge.amount_minor charge.currency %} -> 'CNY 98.00'."""
    if amount_minor is None or not currency:
        return ""
    return format_money(amount_minor, currency)
