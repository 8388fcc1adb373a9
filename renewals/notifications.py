"""Emails about a customer's renewals, in the customer's language and time zone. Sent after the
transaction that changed the renewal commits, so no email announces a change that rolled back."""
import logging
import zoneinfo

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

logger = logging.getLogger(__name__)

SUCCEEDED = "succeeded"
RETRY_SCHEDULED = "retry_scheduled"
NEEDS_ACTION = "needs_action"
SUSPENDED = "suspended"
RESTORED = "restored"
KINDS = (SUCCEEDED, RETRY_SCHEDULED, NEEDS_ACTION, SUSPENDED, RESTORED)


def pay_now_path(renewal) -> str:
    """The payments app's on-session pay-now page for this renewal."""
    return reverse("payments:pay_renewal", args=[renewal.pk])


def notify_later(renewal, kind: str) -> None:
    renewal_id = renewal.pk
    transaction.on_commit(lambda: send_renewal_email(renewal_id=renewal_id, kind=kind))


def send_renewal_email(*, renewal_id: int, kind: str) -> bool:
    from .models import Renewal

    renewal = Renewal.objects.select_related("line__owner", "package").get(pk=renewal_id)
    user = renewal.line.owner
    if user is None or not user.email:
        logger.info("renewal_email_skipped renewal=%s kind=%s reason=no_email", renewal.pk, kind)
        return False
    try:
        zone = zoneinfo.ZoneInfo(user.time_zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    context = {
        "renewal": renewal,
        "line": renewal.line,
        "user": user,
        "pay_now_url": settings.SITE_URL + pay_now_path(renewal),
        "rule_url": settings.SITE_URL + reverse("renewals:rule", args=[renewal.line_id]),
    }
    with translation.override(user.language or settings.LANGUAGE_CODE), timezone.override(zone):
        subject = render_to_string(f"renewals/email/{kind}_subject.txt", context).strip()
        body = render_to_string(f"renewals/email/{kind}_body.txt", context)
    send_mail(subject, body, None, [user.email])
    logger.info("renewal_email_sent renewal=%s kind=%s user=%s", renewal.pk, kind, user.pk)
    return True
