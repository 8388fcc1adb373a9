"""Emails about a customer's renewals. Each is an `accounts.Notice` (docs/notifications.md), the one
path of every customer message: written with the state change, with what the email will say as of
then, and sent by the `accounts.send_notices` task after the commit in the customer's language and
time zone, from `renewals/templates/notices/renewal_<kind>_*.txt`. No email announces a change
that rolled back, and none slows the charge path down.

The functions the engine calls (`notify_later`, `unsent_notice_ids`, `enqueue_notices`) keep their
names; they write and hand out notice rows."""

import logging
import uuid
from datetime import datetime

from django.urls import reverse
from django.utils import timezone

from accounts.models import Notice
from accounts.services import notices

from .models import Renewal

logger = logging.getLogger(__name__)

SUCCEEDED = "succeeded"
RETRY_SCHEDULED = "retry_scheduled"
NEEDS_ACTION = "needs_action"
SUSPENDED = "suspended"
RESTORED = "restored"
KINDS = (SUCCEEDED, RETRY_SCHEDULED, NEEDS_ACTION, SUSPENDED, RESTORED)
NOTICE_KIND_PREFIX = "renewal_"


def notice_kind(kind: str) -> str:
    """The `accounts.Notice.kind` of a renewal email (and its templates' name)."""
    return NOTICE_KIND_PREFIX + kind


def pay_now_path(renewal) -> str:
    """The payments app's on-session pay-now page for this renewal."""
    return reverse("payments:pay_renewal", args=[renewal.pk])


def facts_of(renewal) -> dict:
    """What a renewal email says, taken from the renewal as it is now (the event's moment): the
    email task renders these, whatever the renewal has become by the time it runs."""
    line = renewal.line
    return {
        "renewal_id": renewal.pk,
        "line_name": line.label or line.iccid,
        "package_name": renewal.package.name,
        "package_names": notices.package_names(renewal.package),
        "amount_minor": renewal.amount_minor,
        "currency": renewal.currency,
        "status": renewal.status,
        "next_attempt_at": notices.iso(renewal.next_attempt_at),
        "suspend_at": notices.iso(renewal.suspend_at),
        "last_failure_code": renewal.last_failure_code,
        "pay_now_path": pay_now_path(renewal),
        "rule_path": reverse("renewals:rule", args=[renewal.line_id]),
    }


def _event_key(renewal, kind: str) -> str:
    """The event a renewal email is about: the renewal, the kind and the save that made it (every
    call site saves the renewal first, and each save moves `updated_at`)."""
    moment = notices.iso(renewal.updated_at) or uuid.uuid4().hex
    return f"renewal:{renewal.pk}:{kind}:{moment}"


def notify_later(renewal, kind: str) -> None:
    """Owe the customer this email: a notice row in the caller's transaction, with what the email
    will say as of now, sent once the transaction commits (and beat's sweep as the safety net if
    Redis loses the kick)."""
    owner_id = renewal.line.owner_id
    if owner_id is None:
        logger.info(
            "renewal_email_skipped renewal=%s line=%s kind=%s reason=no_owner", renewal.pk, renewal.line_id, kind
        )
        return
    notices.owe_notice(
        user_id=owner_id,
        line_id=renewal.line_id,
        kind=notice_kind(kind),
        facts=facts_of(renewal),
        dedup_key=_event_key(renewal, kind),
    )


def enqueue_notices(notice_ids: list[int]) -> None:
    """Hand owed emails to the workers (the dispatcher's safety net; beat's notice sweep is another)."""
    if notice_ids:
        notices.kick_sender()


# An email still unsent after this is stale news (accounts.services.notices.GIVE_UP_AFTER).
NOTICE_GIVE_UP_AFTER = notices.GIVE_UP_AFTER


def unsent_notice_ids(*, older_than: datetime | None = None, limit: int = 100) -> list[int]:
    """The renewal emails still owed and due (written before `older_than`, if given)."""
    now = timezone.now()
    unsent = Notice.objects.filter(
        status=Notice.Status.PENDING,
        kind__startswith=NOTICE_KIND_PREFIX,
        next_attempt_at__lte=now,
        created_at__gt=now - NOTICE_GIVE_UP_AFTER,
    )
    if older_than is not None:
        unsent = unsent.filter(created_at__lt=older_than)
    return list(unsent.order_by("created_at", "id").values_list("id", flat=True)[:limit])


def send_notice(*, notice_id: int) -> bool:
    """Send one owed email now (what the task does for each due row)."""
    return notices.send_notice(notice_id=notice_id)


def send_unsent_notices(*, older_than: datetime | None = None) -> list[int]:
    """Send, here and now, the renewal emails still owed (the foreground `renewals_tick`, tests)."""
    return [
        notice_id for notice_id in unsent_notice_ids(older_than=older_than) if notices.send_notice(notice_id=notice_id)
    ]


def send_notice_now(*, renewal, kind: str) -> bool:
    """Owe an email about the renewal as it is now (an operator's resend): a new event each time,
    sent by the task after the commit like every other. False when there is nobody to send it to."""
    owner = renewal.line.owner
    if owner is None or not owner.email:
        return False
    notices.owe_notice(
        user_id=owner.pk,
        line_id=renewal.line_id,
        kind=notice_kind(kind),
        facts=facts_of(renewal),
        dedup_key=f"renewal:{renewal.pk}:{kind}:resend:{uuid.uuid4().hex}",
    )
    return True


def send_renewal_email(*, renewal_id: int, kind: str, facts: dict | None = None) -> bool:
    """Send one renewal email at once through a notice row (a shell, the tests of the templates):
    the renewal as it is now, unless `facts` says otherwise."""
    renewal = Renewal.objects.select_related("line__owner", "package").get(pk=renewal_id)
    owner = renewal.line.owner
    if owner is None or not owner.email:
        logger.info(
            "renewal_email_skipped renewal=%s line=%s kind=%s reason=no_email", renewal.pk, renewal.line_id, kind
        )
        return False
    notice = Notice.objects.create(
        user=owner,
        line_id=renewal.line_id,
        kind=notice_kind(kind),
        facts=facts or facts_of(renewal),
        dedup_key=f"renewal:{renewal.pk}:{kind}:now:{uuid.uuid4().hex}",
    )
    return notices.send_notice(notice_id=notice.pk)
