"""Customer notices: the one path of every message to a customer (docs/notifications.md).

An event writes a `Notice` row in its own transaction (`owe`), with what the message will say as
of then (`facts`) and a key naming the event, so that the same event written twice owes one
message. After the commit the `accounts.send_notices` task (kicked at once, and swept by beat as
the safety net) renders the row from `notices/<kind>_subject.txt` and `notices/<kind>_body.txt` in
the customer's language and time zone and sends it. A mail server that fails leaves the row
pending with its next attempt later; nothing is ever sent inside a web request.

The usage and expiry notices are written here too: at 75 % and 90 % of the active package used,
and 24 hours before the validity ends, each at most once per package (apply_package resets the
flags). "75 % used" means the remaining data is at most 25 % of the package's allowance (data
carried over from an earlier package counts as remaining); the message says the figure actually
reached (a batch that jumps past 90 % says 94 %, not 90 %) and what is left, of which package and
period. Only usage charged to the current package moves the level (docs/usage.md).
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from ..models import Line, Notice, used_percent
from ..user_locale import user_language, user_zone

logger = logging.getLogger(__name__)

SEND_TASK = "accounts.send_notices"
# After the first failed attempt the next ones wait this long; after the last, the notice fails.
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# A message still unsent after this is stale news: it fails instead of going out late.
GIVE_UP_AFTER = timedelta(days=1)
SEND_BATCH = 200

USAGE = "usage"
EXPIRY = "expiry"
LINE_ADDED = "line_added"
USAGE_NOTICE_LEVELS = (90, 75)  # highest first
EXPIRY_NOTICE_BEFORE = timedelta(hours=24)
NOTIFIED_STATUSES = (Line.Status.ACTIVE, Line.Status.DATA_EXHAUSTED)


# --- writing: in the transaction of the event ---------------------------------------------------


def owe(notices: list[Notice]) -> None:
    """Write the rows in the caller's transaction and kick the sender once it commits. An event
    already owed (its `dedup_key` taken) is left as it is: one message per event."""
    if not notices:
        return
    Notice.objects.bulk_create(notices, ignore_conflicts=True)
    transaction.on_commit(_kick_after_commit)


# Inside one_kick(): the kicks owed by the block, sent as one at its end.
_owed_kicks: ContextVar[list[bool] | None] = ContextVar("owed_notice_kicks", default=None)


@contextmanager
def one_kick() -> Iterator[None]:
    """Kick the sender once, when the block ends, for every notice the block owed (a batch of
    renewals charged by one task: one send task, not one per renewal; docs/performance-renewals.md).
    Threads the block starts share it when run in a copy of its context (contextvars.copy_context).
    The rows are written either way: a kick lost with the process is beat's sweep's to send."""
    if _owed_kicks.get() is not None:
        yield
        return
    owed: list[bool] = []
    token = _owed_kicks.set(owed)
    try:
        yield
    finally:
        _owed_kicks.reset(token)
        if owed:
            kick_sender()


def _kick_after_commit() -> None:
    owed = _owed_kicks.get()
    if owed is None:
        kick_sender()
    else:
        owed.append(True)


def owe_notice(
    *, user_id: int, line_id: int | None, kind: str, facts: dict, dedup_key: str, now: datetime | None = None
) -> None:
    now = now or timezone.now()
    owe(
        [
            Notice(
                user_id=user_id,
                line_id=line_id,
                kind=kind,
                facts=facts,
                dedup_key=dedup_key,
                created_at=now,
                next_attempt_at=now,
            )
        ]
    )


def kick_sender() -> None:
    """Ask a worker to send now rather than at the next beat. With the broker down the rows wait
    for beat's sweep, which is why a failure here is only a warning."""
    try:
        current_app.send_task(SEND_TASK, retry=False)
    except Exception as exc:  # kombu raises several connection error types; the rows are safe either way
        logger.warning("notice_kick_failed error=%s: sending waits for the beat sweep", exc)


def iso(value: datetime | None) -> str | None:
    """A fact's time: ISO text in the JSON snapshot (keys ending in `_at`, parsed back to render)."""
    return value.isoformat() if value else None


# --- sending: the task, after the commit --------------------------------------------------------


def send_due_notices(
    *, now: datetime | None = None, notice_ids: list[int] | None = None, limit: int = SEND_BATCH
) -> int:
    """Send the pending notices that are due (oldest first), each once. Returns how many were sent."""
    now = now or timezone.now()
    due = Notice.objects.filter(status=Notice.Status.PENDING, next_attempt_at__lte=now)
    if notice_ids is not None:
        due = due.filter(pk__in=notice_ids)
    ids = list(due.order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit])
    return sum(send_notice(notice_id=pk, now=now) for pk in ids)


def send_notice(*, notice_id: int, now: datetime | None = None) -> bool:
    """Send one notice, once: the row is locked (SKIP LOCKED: a twin task sending it right now is
    left to it) and its outcome written in the same transaction. A failed send counts an attempt
    and sets the next one; a worker killed between the send and the commit sends it again (at
    least once, never twice on purpose)."""
    now = now or timezone.now()
    with transaction.atomic():
        notice = (
            Notice.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("user", "line")
            .filter(pk=notice_id, status=Notice.Status.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if notice is None:
            return False
        if now - notice.created_at > GIVE_UP_AFTER:
            return _close(notice, Notice.Status.FAILED, "stale: not sent within a day")
        why_not = _why_not_send(notice)
        if why_not:
            return _close(notice, Notice.Status.SKIPPED, why_not)
        notice.attempts += 1
        try:
            notice.language, subject, body = render(notice)
            send_mail(subject, body, None, [notice.user.email])
        except Exception as exc:
            notice.last_error = f"{type(exc).__name__}: {exc}"[:500]
            if notice.attempts >= MAX_ATTEMPTS:
                notice.status = Notice.Status.FAILED
                logger.error(
                    "notice_failed notice=%s kind=%s attempts=%s error=%s",
                    notice.pk,
                    notice.kind,
                    notice.attempts,
                    notice.last_error,
                )
            else:
                notice.next_attempt_at = now + RETRY_DELAYS[notice.attempts - 1]
                logger.warning(
                    "notice_retry notice=%s kind=%s attempts=%s error=%s",
                    notice.pk,
                    notice.kind,
                    notice.attempts,
                    notice.last_error,
                )
            notice.save(update_fields=["attempts", "last_error", "status", "next_attempt_at", "language"])
            return False
        notice.status = Notice.Status.SENT
        notice.sent_at = now
        notice.save(update_fields=["attempts", "status", "sent_at", "language"])
    logger.info("notice_sent notice=%s kind=%s user=%s line=%s", notice.pk, notice.kind, notice.user_id, notice.line_id)
    return True


def render(notice: Notice) -> tuple[str, str, str]:
    """(language, subject, body) of the notice in its customer's language and time zone now."""
    language = user_language(notice.user)
    facts = {
        key: (datetime.fromisoformat(value) if key.endswith("_at") and value else value)
        for key, value in notice.facts.items()
    }
    # The package's name in the customer's language, if the operator gave one (docs/translations.md).
    facts["package_name"] = (facts.get("package_names") or {}).get(language) or facts.get("package_name", "")
    context = {"notice": facts, "user": notice.user, "site_url": settings.SITE_URL.rstrip("/")}
    with translation.override(language), timezone.override(user_zone(notice.user)):
        subject = " ".join(render_to_string(f"notices/{notice.kind}_subject.txt", context).split())
        body = render_to_string(f"notices/{notice.kind}_body.txt", context)
    return language, subject, body


def _close(notice: Notice, status: str, reason: str) -> bool:
    notice.status = status
    notice.last_error = reason
    notice.save(update_fields=["status", "last_error"])
    logger.info("notice_not_sent notice=%s kind=%s status=%s reason=%s", notice.pk, notice.kind, status, reason)
    return False


def _why_not_send(notice: Notice) -> str:
    """Why the notice must not go out now (empty: it may): nobody to send to, or a line notice the
    line's state has made untrue since it was written (the line ended, or has a new package)."""
    if not notice.user.email:
        return "no email address"
    line = notice.line
    if notice.kind == LINE_ADDED and (
        line is None or line.status == Line.Status.TERMINATED or line.owner_id != notice.user_id
    ):
        return "the line is no longer the customer's"
    if notice.kind in (USAGE, EXPIRY):
        if (
            line is None
            or line.status == Line.Status.TERMINATED
            or (notice.kind == EXPIRY and line.status not in NOTIFIED_STATUSES)
        ):
            return "the line is no longer in service"
        if notice.facts.get("period_start_at") != iso(line.package_started_at) or notice.facts.get(
            "period_end_at"
        ) != iso(line.expires_at):
            return "the line has a new package"
    return ""


# --- usage and expiry notices -------------------------------------------------------------------


def usage_notice_level(*, remaining_bytes: int, allowance_bytes: int) -> int:
    """The highest notice level the line has reached (0 for none)."""
    used = used_percent(remaining_bytes=remaining_bytes, allowance_bytes=allowance_bytes)
    return next((level for level in USAGE_NOTICE_LEVELS if used >= level), 0)


def auto_renewal_on(line: Line) -> bool:
    """Whether the line has an enabled renewal rule: the database keeps its triggers' copies on the
    line, NULL unless the rule is on (renewals migration 0004), so accounts needs no renewals import."""
    return line.renew_below_bytes is not None or line.renew_hours_before_expiry is not None


def package_names(package) -> dict[str, str]:
    """A package's names in the languages the operator filled in, for a notice to pick from."""
    names = {"zh-hans": package.name_zh_hans}
    return {language: name for language, name in names.items() if name}


def line_facts(line: Line) -> dict:
    """What every line notice says about the line and its package's period."""
    return {
        "line_name": line.label or line.iccid,
        "line_path": reverse("accounts:line_detail", args=[line.pk]),
        "package_name": line.package.name if line.package_id else "",
        "package_names": package_names(line.package) if line.package_id else {},
        "period_start_at": iso(line.package_started_at),
        "period_end_at": iso(line.expires_at),
        "auto_renewal": auto_renewal_on(line),
        "renews_before_expiry": line.renew_hours_before_expiry is not None,
        # What auto-renewal will do, for the notice to say it (and when), rather than "turn it on".
        "renew_below_bytes": line.renew_below_bytes,
        "renew_hours_before_expiry": line.renew_hours_before_expiry,
    }


def owe_usage_notices(*, levels: dict[int, int], now: datetime) -> None:
    """For each line whose usage just reached a new level (its row already written in this
    transaction), owe one notice with the figures of that moment. The key is the line, its
    package's period and the level: a lost flag cannot mail the same level twice."""
    lines = (
        Line.objects.filter(pk__in=levels, owner__isnull=False)
        .exclude(status=Line.Status.TERMINATED)
        .select_related("package")
    )
    notices = []
    for line in lines:
        allowance = line.data_allowance_bytes
        remaining = max(line.data_remaining_bytes, 0)
        facts = {
            **line_facts(line),
            "level": levels[line.pk],
            "used_percent": line.data_used_percent,
            "remaining_bytes": remaining,
            "allowance_bytes": allowance,
        }
        key = f"{USAGE}:{line.pk}:{iso(line.package_started_at) or line.package_id}:{levels[line.pk]}"
        notices.append(
            Notice(
                user_id=line.owner_id,
                line=line,
                kind=USAGE,
                facts=facts,
                dedup_key=key,
                created_at=now,
                next_attempt_at=now,
            )
        )
    owe(notices)


def send_expiry_notices(*, now: datetime | None = None, limit: int = 500) -> int:
    """Flag the lines whose validity ends within 24 hours and owe each owner a notice. Flags are
    claimed under SKIP LOCKED, so two beats never flag one line twice, and the notice's key (the
    line and its end) owes one message per end whatever happens to the flag."""
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
            owe(
                [
                    Notice(
                        user_id=line.owner_id,
                        line=line,
                        kind=EXPIRY,
                        facts=line_facts(line),
                        dedup_key=f"{EXPIRY}:{line.pk}:{iso(line.expires_at)}",
                        created_at=now,
                        next_attempt_at=now,
                    )
                    for line in Line.objects.filter(pk__in=ids, owner__isnull=False).select_related("package")
                ]
            )
    return len(ids)


# --- a line given to a customer -------------------------------------------------------------------


def owe_lines_added(*, lines: list[Line], now: datetime) -> None:
    """Tell each owner that a line was added to their account (an operator's assignment, an import
    with an owner), in the transaction that gave it. One message per line and owner. Each line's
    package is read from the line, so callers pass lines loaded with it."""
    owe(
        [
            Notice(
                user_id=line.owner_id,
                line=line,
                kind=LINE_ADDED,
                facts={**line_facts(line), "data_bytes": max(line.data_remaining_bytes, 0)},
                dedup_key=f"{LINE_ADDED}:{line.pk}:{line.owner_id}",
                created_at=now,
                next_attempt_at=now,
            )
            for line in lines
            if line.owner_id is not None
        ]
    )


# --- what operators see -------------------------------------------------------------------------


def failed_notices(limit: int = 50):
    return Notice.objects.filter(status=Notice.Status.FAILED).select_related("user", "line").order_by("-id")[:limit]


# /healthz counts the failures of recent events only: a failed notice cannot be edited back, so an
# all-time count would say "attention" forever after one bad night of the mail server. Two days
# covers a notice that failed as stale (a day after its event).
RECENT_FAILURES = timedelta(days=2)


def failed_notice_count(*, now: datetime | None = None) -> int:
    """Notices of the last two days' events that failed (out of attempts, or stale)."""
    since = (now or timezone.now()) - RECENT_FAILURES
    return Notice.objects.filter(status=Notice.Status.FAILED, created_at__gte=since).count()
