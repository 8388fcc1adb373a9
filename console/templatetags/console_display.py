"""The console's display of stored values in templates (console.admin.display)."""

from django import template

from console.admin.display import zoned_time

register = template.Library()


@register.filter
def zoned(value) -> str:
    """A time in the operator's zone with its label: "2026-11-29 18:00 UTC"."""
    return zoned_time(value)
