"""Low-data and expiry emails: at 75 % and 90 % of the active package used, and 24 hours before
the validity ends, each at most once per package (apply_package resets the flags).

"75 % used" means the remaining data is at most 25 % of the active package's allowance (data
carried over from an earlier package counts as remaining). If a batch jumps straight past 90 %,
only the 90 % email is sent: a stale 75 % warning would only be noise.

Only usage charged to the current package moves the level: a record of an earlier package that
arrives after the new one was applied lowers nothing and sends nothing (docs/usage.md).
"""
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _

from ..models import Line

logger = logging.getLogger(__name__)

USAGE_NOTICE_LEVELS = (90, 75)  # highest first
EXPIRY_NOTICE_BEFORE = timedelta(hours=24)
NOTIFIED_STATUSES = (Line.Status.ACTIVE, Line.Status.DATA_EXHAUSTED)


def usage_notice_level(*, remaining_bytes: int, allowance_bytes: int) -> int:
    """The highest notice level the line has reached (0 for none)."""
    if allowance_bytes <= 0:
        return 0
    used_percent_floor = 100 - 100 * max(remaining_bytes, 0) / allowance_bytes
    for level in USAGE_NOTICE_LEVELS:
        if used_percent_floor >= level:
            return level
    return 0


def _user_zone(user) -> ZoneInfo:
    try:
        return ZoneInfo(user.time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _line_url(line: Line) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("accounts:line_detail", args=[line.pk])


def _language(user) -> str:
    codes = {code for code, _name in settings.LANGUAGES}
    return user.language if user.language in codes else settings.LANGUAGE_CODE


def send_usage_notice(*, line_id: int, level: int) -> bool:
    """Email the owner that the line reached `level` % used. Returns whether an email went out."""
    line = Line.objects.select_related("owner", "package").filter(pk=line_id).first()
    if line is None or line.owner is None or not line.owner.email:
        logger.info("usage_notice_skipped line=%s level=%s reason=no_email", line_id, level)
        return False
    user = line.owner
    with translation.override(_language(user)):
        name = line.label or line.iccid
        subject = _("Your eSIM %(name)s has used %(percent)s%% of its data") % {"name": name, "percent": level}
        body = _(
            "Hello,\n\n"
            "your eSIM %(name)s has used %(percent)s%% of its data: %(remaining)s left.\n"
            "Top up or turn on auto-renewal so that your data does not stop:\n"
            "%(url)s\n"
        ) % {"name": name, "percent": level, "remaining": filesizeformat(max(line.data_remaining_bytes, 0)), "url": _line_url(line)}
    send_mail(subject, body, None, [user.email])
    logger.info("usage_notice_sent line=%s user=%s level=%s", line.pk, user.pk, level)
    return True


def send_expiry_notice(*, line_id: int) -> bool:
    line = Line.objects.select_related("owner").filter(pk=line_id).first()
    if line is None or line.owner is None or not line.owner.email or line.expires_at is None:
        logger.info("expiry_notice_skipped line=%s reason=no_email", line_id)
        return False
    user = line.owner
    with translation.override(_language(user)):
        name = line.label or line.iccid
        ends = formats.date_format(timezone.localtime(line.expires_at, _user_zone(user)), "DATETIME_FORMAT")
        subject = _("Your eSIM %(name)s expires within 24 hours") % {"name": name}
        body = _(
            "Hello,\n\n"
            "the package on your eSIM %(name)s ends on %(end)s.\n"
            "Renew it or turn on auto-renewal to keep your line working:\n"
            "%(url)s\n"
        ) % {"name": name, "end": ends, "url": _line_url(line)}
    send_mail(subject, body, None, [user.email])
    logger.info("expiry_notice_sent line=%s user=%s", line.pk, user.pk)
    return True


def send_after_commit(*, usage_levels: dict[int, int] | None = None, expiry_line_ids: list[int] | None = None) -> None:
    """Send the notices once the flags that promise "sent once" are committed. A failing mail
    server costs the email, never the usage batch: the error is logged with the line id."""

    def send() -> None:
        for line_id, level in (usage_levels or {}).items():
            try:
                send_usage_notice(line_id=line_id, level=level)
            except Exception:
                logger.exception("usage_notice_failed line=%s level=%s", line_id, level)
        for line_id in expiry_line_ids or []:
            try:
                send_expiry_notice(line_id=line_id)
            except Exception:
                logger.exception("expiry_notice_failed line=%s", line_id)

    transaction.on_commit(send)


def send_expiry_notices(*, now: datetime | None = None, limit: int = 500) -> int:
    """Flag and email the lines whose validity ends within 24 hours. Flags are claimed under
    SKIP LOCKED, so two beats never email one line twice."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Line.objects.filter(
                expiry_notice_sent=False,
                status__in=NOTIFIED_STATUSES,
                expires_at__gt=now,
                expires_at__lte=now + EXPIRY_NOTICE_BEFORE,
            )
            .order_by("expires_at", "id")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            Line.objects.filter(pk__in=ids, expiry_notice_sent=False).update(expiry_notice_sent=True, updated_at=now)
            send_after_commit(expiry_line_ids=ids)
    return len(ids)
