"""Emails about a customer's renewals, in the customer's language and time zone. Each is a
`RenewalNotice` row written with the state change and sent by a Celery task after the commit: no
email announces a change that rolled back, and none slows the charge path down."""
import logging
import zoneinfo
from datetime import datetime, timedelta

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


def facts_of(renewal) -> dict:
    """What a renewal email says, taken from the renewal as it is now (the event's moment): the
    email task renders these, whatever the renewal has become by the time it runs."""
    line = renewal.line
    return {
        "line_name": line.label or line.iccid,
        "package_name": renewal.package.name,
        "amount_minor": renewal.amount_minor,
        "currency": renewal.currency,
        "status": renewal.status,
        "next_attempt_at": renewal.next_attempt_at.isoformat() if renewal.next_attempt_at else None,
        "suspend_at": renewal.suspend_at.isoformat() if renewal.suspend_at else None,
        "last_failure_code": renewal.last_failure_code,
    }


def notify_later(renewal, kind: str):
    """Owe the customer this email: a row in the caller's transaction, with what the email will
    say as of now, its task enqueued once the transaction commits (and the dispatcher's sweep as
    the safety net if Redis loses it)."""
    from .models import RenewalNotice

    notice = RenewalNotice.objects.create(renewal_id=renewal.pk, kind=kind, facts=facts_of(renewal))
    transaction.on_commit(lambda: enqueue_notices([notice.pk]))
    return notice


def enqueue_notices(notice_ids: list[int]) -> None:
    from .tasks import delay_each, send_renewal_notice_task

    # A notice left unsent is enqueued again by the dispatcher's sweep once the broker is back.
    delay_each(send_renewal_notice_task, notice_ids, event="renewal_email_enqueue_failed", field="notice")


def send_notice(*, notice_id: int) -> bool:
    """Send one owed email, once: the row is locked (SKIP LOCKED: a twin task sending it right now
    is left to it) and marked sent in the same transaction. An SMTP error rolls back, so the sweep
    tries again. A worker killed between the send and the commit sends it again: at least once."""
    from .models import RenewalNotice

    with transaction.atomic():
        notice = RenewalNotice.objects.select_for_update(skip_locked=True).filter(pk=notice_id, sent_at__isnull=True).first()
        if notice is None:
            logger.info("renewal_email_skipped notice=%s reason=already_sent_or_sending", notice_id)
            return False
        send_renewal_email(renewal_id=notice.renewal_id, kind=notice.kind, facts=notice.facts or None)
        notice.sent_at = timezone.now()
        notice.save(update_fields=["sent_at"])
    return True


# An email still unsent after this is stale news (and one that fails every time stops being tried).
NOTICE_GIVE_UP_AFTER = timedelta(days=1)


def unsent_notice_ids(*, older_than: datetime | None = None, limit: int = 100) -> list[int]:
    from .models import RenewalNotice

    unsent = RenewalNotice.objects.filter(sent_at__isnull=True, created_at__gt=timezone.now() - NOTICE_GIVE_UP_AFTER)
    if older_than is not None:
        unsent = unsent.filter(created_at__lt=older_than)
    return list(unsent.order_by("created_at", "id").values_list("id", flat=True)[:limit])


def send_unsent_notices(*, older_than: datetime | None = None) -> list[int]:
    """Send, here and now, the emails still owed (the foreground `renewals_tick`, tests)."""
    sent = []
    for notice_id in unsent_notice_ids(older_than=older_than):
        try:
            if send_notice(notice_id=notice_id):
                sent.append(notice_id)
        except Exception:
            logger.exception("renewal_email_failed notice=%s", notice_id)
    return sent


def send_notice_now(*, renewal, kind: str) -> bool:
    """An email about the renewal as it is now, sent here and now (an operator's resend), through
    a notice row like every other so it is on record."""
    from .models import RenewalNotice

    with transaction.atomic():
        notice = RenewalNotice.objects.create(renewal_id=renewal.pk, kind=kind, facts=facts_of(renewal))
        if not send_renewal_email(renewal_id=renewal.pk, kind=kind, facts=notice.facts):
            notice.delete()
            return False
        notice.sent_at = timezone.now()
        notice.save(update_fields=["sent_at"])
    return True


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def send_renewal_email(*, renewal_id: int, kind: str, facts: dict | None = None) -> bool:
    """Send one renewal email in the customer's language and time zone, saying `facts` (a notice's
    snapshot; the renewal as it is now when there is none)."""
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
    facts = facts or facts_of(renewal)
    context = {
        "notice": {**facts, "next_attempt_at": _when(facts.get("next_attempt_at")), "suspend_at": _when(facts.get("suspend_at"))},
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
