"""Data amounts for people: bytes shown as MB or GB in the active language's number format."""

from django import template
from django.utils.formats import number_format
from django.utils.translation import gettext as _

register = template.Library()

MB = 1024**2
GB = 1024**3


@register.filter
def data_size(value) -> str:
    """1536 MB -> "1.5 GB"; 300 MB -> "300 MB"; operators count 1 GB as 1024 MB."""
    try:
        amount = int(value)
    except (TypeError, ValueError):
        return ""
    if abs(amount) >= GB:
        return _("%(amount)s GB") % {
            "amount": number_format(
                round(amount / GB, 2), decimal_pos=2 if amount % GB else 0, use_l10n=True, force_grouping=True
            )
        }
    megabytes = amount / MB
    decimals = 1 if 0 < abs(megabytes) < 10 and amount % MB else 0
    return _("%(amount)s MB") % {
        "amount": number_format(round(megabytes, decimals), decimal_pos=decimals, use_l10n=True, force_grouping=True)
    }


@register.filter
def percent_of(part, whole) -> int:
    try:
        part, whole = int(part), int(whole)
    except (TypeError, ValueError):
        return 0
    if whole <= 0:
        return 0
    return max(0, min(100, round(100 * part / whole)))


@register.filter
def signed_data_size(value) -> str:
    """A usage correction as read: -314572800 -> "−300 MB" (a true minus sign), 1 GB -> "+1 GB"."""
    try:
        amount = int(value)
    except (TypeError, ValueError):
        return ""
    return ("+" if amount > 0 else "\u2212" if amount < 0 else "") + data_size(abs(amount))
