"""A user's language and time zone, as every page and message uses them: one place, so the
portal, the notices and the middleware cannot disagree about an unknown zone or language."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings


def user_language(user) -> str:
    """The user's saved language if the site offers it, else the site's default."""
    language = (getattr(user, "language", "") or "").lower()
    return language if language in {code for code, _name in settings.LANGUAGES} else settings.LANGUAGE_CODE


def user_zone(user) -> ZoneInfo:
    """The user's saved time zone; UTC if none or not a known zone."""
    return zone_named(getattr(user, "time_zone", "") or "UTC")


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
