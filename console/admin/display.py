"""How the console shows stored values to an operator (docs/console.md, "Units and time zones"):
bytes as MB/GB, minor units as "CNY 98.00", every time with its zone, JSON as readable lines.

`ReadableFieldsMixin` swaps each read-only model field of a list, a change page or an inline for a
display function chosen by the field's kind, so no ModelAdmin lists raw units by forgetting one."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from typing import Any

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.functional import lazy
from django.utils.html import format_html, format_html_join

from accounts.templatetags.data_units import data_size
from payments.money import format_money_code

EMPTY = "-"
# "data remaining (bytes)" -> "data remaining": the display says the unit itself. Both the English
# and the Chinese labels end in the unit in brackets.
_UNIT_SUFFIX = re.compile(r"\s*[(（][^()（）]*[)）]\s*$")


def zone_label(value: datetime) -> str:
    """UTC, or the offset from it ("UTC+8", "UTC-3:30"): short enough for a list column and never
    ambiguous, unlike abbreviations such as CST."""
    offset = value.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def zoned_time(value: datetime | None) -> str:
    """A stored (UTC) time in the operator's own zone (accounts.middleware), with that zone:
    "2026-11-29 18:00 UTC", "2026-11-30 02:00 UTC+8"."""
    if value is None:
        return EMPTY
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return f"{local:%Y-%m-%d %H:%M} {zone_label(local)}"


def currency_of(obj) -> str:
    currency = getattr(obj, "currency", "")
    if not currency and getattr(obj, "package", None) is not None:
        currency = obj.package.currency
    return currency or ""


def money(amount_minor: int | None, currency: str) -> str:
    if amount_minor is None:
        return EMPTY
    return format_money_code(amount_minor, currency) if currency else str(amount_minor)


def _readable_value(key: str, value: Any, facts: dict) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int) and (key.endswith("_bytes") or key == "bytes"):
        return data_size(value)
    if isinstance(value, int) and key.endswith("_minor") and facts.get("currency"):
        return format_money_code(value, facts["currency"])
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and "T" in value:
        parsed = parse_datetime(value)
        if parsed is not None:
            return zoned_time(parsed)
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_readable_value(k, v, value)}" for k, v in value.items())
    return str(value)


def readable_json(value) -> str:
    """A JSON object as one "key: value" line per key, units and times as elsewhere in the console."""
    if not value:
        return EMPTY
    if not isinstance(value, dict):
        return _readable_value("", value, {})
    return format_html(
        '<span class="readable-json">{}</span>',
        format_html_join(
            "",
            "<span><b>{}</b>: {}</span><br>",
            ((key, _readable_value(key, item, value)) for key, item in value.items()),
        ),
    )


def _label(field: models.Field):
    return lazy(lambda: _UNIT_SUFFIX.sub("", str(field.verbose_name)), str)()


@cache
def readable(model: type[models.Model], name: Any):
    """The display function for `model.name`, or `name` itself when it is shown as stored. Cached:
    the admin finds a read-only callable in a fieldset by identity."""
    if not isinstance(name, str):
        return name
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return name
    if not field.concrete or field.is_relation or field.choices:
        return name
    attname = field.attname
    if isinstance(field, models.DateTimeField):

        def show(obj):
            return zoned_time(getattr(obj, attname))

    elif isinstance(field, models.IntegerField) and (name.endswith("_bytes") or name == "bytes"):

        def show(obj):
            value = getattr(obj, attname)
            return EMPTY if value is None else data_size(value)

    elif isinstance(field, models.IntegerField) and name.endswith("_minor"):

        def show(obj):
            return money(getattr(obj, attname), currency_of(obj))

    elif isinstance(field, models.JSONField):

        def show(obj):
            return readable_json(getattr(obj, attname))

    else:
        return name
    show.__name__ = f"{name}_readable"
    show.__qualname__ = show.__name__
    return admin.display(description=_label(field), ordering=name)(show)


class ReadableFieldsMixin:
    """For ModelAdmins and inlines: read-only fields and list columns shown by `readable`."""

    def get_list_display(self, request):
        return [readable(self.model, name) for name in super().get_list_display(request)]

    def get_readonly_fields(self, request, obj=None):
        return [readable(self.model, name) for name in super().get_readonly_fields(request, obj)]

    def _readonly_names(self, request, obj) -> set:
        names = {name for name in super().get_readonly_fields(request, obj) if isinstance(name, str)}
        if not self.has_change_permission(request, obj):  # a view-only page shows every field read-only
            names |= {field.name for field in self.model._meta.fields}
        return names

    def get_fields(self, request, obj=None):
        readonly = self._readonly_names(request, obj)
        return [readable(self.model, name) if name in readonly else name for name in super().get_fields(request, obj)]

    def _shown(self, name, readonly: set):
        if isinstance(name, (list, tuple)):  # several fields on one row
            return tuple(self._shown(item, readonly) for item in name)
        return readable(self.model, name) if isinstance(name, str) and name in readonly else name

    def get_fieldsets(self, request, obj=None):
        readonly = self._readonly_names(request, obj)
        return [
            (
                title,
                {
                    **options,
                    "fields": [self._shown(name, readonly) for name in options["fields"]],
                },
            )
            for title, options in super().get_fieldsets(request, obj)
        ]
