"""Dates and times for people, by Babel in the active language's locale and the active (the
user's) time zone: one place for every page and email (docs/locale-formats.md). Money, which
needs the ledger's currency exponents, is formatted next to them in payments/money.py with the
same locale."""

from datetime import date, datetime

from babel import dates as babel_dates
from django.conf import settings
from django.utils import timezone, translation


def babel_locale(language: str | None = None) -> str:
    """'zh-hans' → 'zh_Hans_CN', 'en' → 'en_US' (settings.BABEL_LOCALES)."""
    language = (language or translation.get_language() or settings.LANGUAGE_CODE).lower()
    locales: dict[str, str] = settings.BABEL_LOCALES
    return locales.get(language, locales[settings.LANGUAGE_CODE])


def format_datetime(value: datetime | None, length: str = "medium") -> str:
    """'Nov 29, 2026, 19:05' / '2026年11月29日 19:05' (medium); '11/29/26, 19:05' /
    '2026/11/29 19:05' (short), in the active time zone. Minutes, not seconds."""
    if value is None:
        return ""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    locale = babel_locale()
    pattern = babel_dates.get_datetime_format(length, locale=locale)
    return (
        str(pattern)
        .replace("{1}", babel_dates.format_date(value, length, locale=locale))
        # A 24-hour clock in every language (the locale's own "Hm" pattern), as before: a
        # sentence ending in a time then never ends in "PM."
        .replace("{0}", babel_dates.format_skeleton("Hm", value, locale=locale))
    )


def format_date(value: date | datetime | None, length: str = "medium") -> str:
    """'Nov 29, 2026' / '2026年11月29日' (medium); '11/29/26' / '2026/11/29' (short)."""
    if value is None:
        return ""
    if isinstance(value, datetime) and timezone.is_aware(value):
        value = timezone.localtime(value)
    return babel_dates.format_date(value, length, locale=babel_locale())
