"""One path for every customer message (docs/notifications.md): the event writes an `accounts.Notice`
row in its own transaction; the `accounts.send_notices` task renders it in the customer's language
and time zone after the commit, retries it when the mail server fails, and sends it once.

The partner's usage request and the expiry sweep only owe the email; nothing here mocks our code,
only the mail server (the test email backends at the edge)."""

import smtplib
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from accounts.models import Notice
from accounts.tasks import send_expiry_notices, send_notices
from tests.builders import GB, MB, make_line, make_user
from tests.partner.helpers import record, signed_post

FAILURES: list[str] = []


class RefusingBackend(BaseEmailBackend):
    """A mail server that is down: the edge we fake."""

    def send_messages(self, messages):
        FAILURES.append(messages[0].subject)
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


@pytest.fixture
def fresh_line(customer, package):
    return make_line(
        owner=customer,
        package=package,
        data_remaining_bytes=10 * GB,
        data_used_bytes=0,
        package_started_at=timezone.now() - timedelta(days=2),
    )


def post_usage(client, line, size, record_id, capture):
    """The partner's usage request, of a period inside the line's current package."""
    end = timezone.now() - timedelta(minutes=5)
    period = {"start": (end - timedelta(minutes=5)).isoformat(), "end": end.isoformat()}
    with capture(execute=True):
        assert signed_post(client, {"records": [record(line, id=record_id, bytes=size, **period)]}).status_code == 200
    line.refresh_from_db()
    return line


def test_a_usage_batch_sends_no_email_inside_the_request_and_owes_one_notice(
    client, fresh_line, django_capture_on_commit_callbacks
):
    line = post_usage(client, fresh_line, 10 * GB - 600 * MB, "a", django_capture_on_commit_callbacks)
    assert mail.outbox == []  # SMTP is never on the partner's request path
    [notice] = Notice.objects.all()
    assert (notice.user_id, notice.line_id, notice.kind, notice.status, notice.attempts) == (
        line.owner_id,
        line.pk,
        "usage",
        "pending",
        0,
    )
    assert notice.facts["used_percent"] == 94 and notice.facts["remaining_bytes"] == 600 * MB
    assert notice.facts["allowance_bytes"] == 10 * GB and notice.facts["auto_renewal"] is False


def test_the_task_sends_it_in_english_with_the_figures_of_the_event(
    client, fresh_line, django_capture_on_commit_callbacks
):
    line = post_usage(client, fresh_line, 10 * GB - 600 * MB, "a", django_capture_on_commit_callbacks)
    assert send_notices.apply().get() == 1
    [message] = mail.outbox
    # 94 % was used and 600 MB are left: the level crossed (90) is not the figure reported.
    assert message.subject == f"Your eSIM {line.iccid} has used 94% of its data"
    assert "600 MB of 10 GB left" in message.body
    assert line.package.name in message.body and "valid until" in message.body  # the period is named
    assert "turn on auto-renewal" in message.body
    notice = Notice.objects.get()
    assert notice.status == "sent" and notice.sent_at is not None and notice.language == "en"
    assert send_notices.apply().get() == 0  # sent once
    assert len(mail.outbox) == 1


def test_the_task_sends_it_in_chinese_to_a_chinese_customer(client, package, django_capture_on_commit_callbacks):
    user = make_user(email="li@example.com", language="zh-hans", time_zone="Asia/Shanghai")
    line = make_line(owner=user, package=package, data_remaining_bytes=10 * GB, data_used_bytes=0)
    post_usage(client, line, 10 * GB - 600 * MB, "zh", django_capture_on_commit_callbacks)
    send_notices.apply()
    [message] = mail.outbox
    assert message.subject == f"您的 eSIM {line.iccid} 已用掉 94% 的流量"
    assert "剩余 600 MB（共 10 GB）" in message.body
    assert "年" in message.body  # the package's end, in Django's zh-Hans date format
    assert Notice.objects.get().language == "zh-hans"


def test_a_customer_with_auto_renewal_on_is_not_told_to_turn_it_on(
    client, fresh_line, package, django_capture_on_commit_callbacks
):
    from renewals.models import RenewalRule

    RenewalRule.objects.create(line=fresh_line, package=package, enabled=True, trigger_hours_before_expiry=24)
    post_usage(client, fresh_line, 10 * GB - 600 * MB, "a", django_capture_on_commit_callbacks)
    send_notices.apply()
    [message] = mail.outbox
    assert "turn on auto-renewal" not in message.body
    assert "Auto-renewal is on" in message.body


def test_a_failing_mail_server_leaves_the_notice_pending_and_a_later_sweep_sends_it_once(
    client, fresh_line, django_capture_on_commit_callbacks, settings
):
    post_usage(client, fresh_line, 10 * GB - 600 * MB, "a", django_capture_on_commit_callbacks)
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    FAILURES.clear()
    assert send_notices.apply().get() == 0
    notice = Notice.objects.get()
    assert notice.status == "pending" and notice.attempts == 1 and notice.sent_at is None
    assert notice.next_attempt_at > timezone.now() and "SMTPServerDisconnected" in notice.last_error
    assert send_notices.apply().get() == 0 and len(FAILURES) == 1  # not before its next attempt

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with time_machine.travel(notice.next_attempt_at + timedelta(seconds=1), tick=False):
        assert send_notices.apply().get() == 1
        assert send_notices.apply().get() == 0
    assert len(mail.outbox) == 1
    notice.refresh_from_db()
    assert notice.status == "sent" and notice.attempts == 2


def test_the_same_event_twice_owes_one_notice(client, fresh_line, django_capture_on_commit_callbacks):
    line = post_usage(client, fresh_line, 8 * GB, "a", django_capture_on_commit_callbacks)
    line.usage_notice_level = 0  # the line's flag lost: the same level of the same package again
    line.save()
    post_usage(client, line, MB, "b", django_capture_on_commit_callbacks)
    assert Notice.objects.filter(kind="usage").count() == 1
    send_notices.apply()
    assert len(mail.outbox) == 1


def test_the_expiry_sweep_owes_the_email_and_the_task_sends_it(customer, package, django_capture_on_commit_callbacks):
    line = make_line(owner=customer, package=package, expires_at=timezone.now() + timedelta(hours=5))
    with django_capture_on_commit_callbacks(execute=True):
        assert send_expiry_notices() == 1
    assert mail.outbox == []
    [notice] = Notice.objects.all()
    assert (notice.kind, notice.line_id) == ("expiry", line.pk)
    send_notices.apply()
    [message] = mail.outbox
    assert message.subject == f"Your eSIM {line.iccid} expires within 24 hours"
    assert package.name in message.body


def test_the_sweep_is_on_beats_schedule():
    entries = [entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] == "accounts.send_notices"]
    assert len(entries) == 1
    assert send_notices.name == "accounts.send_notices"


def test_a_usage_notice_for_a_line_terminated_before_it_was_sent_is_not_sent(
    client, fresh_line, django_capture_on_commit_callbacks
):
    line = post_usage(client, fresh_line, 10 * GB - 600 * MB, "a", django_capture_on_commit_callbacks)
    line.status = "terminated"
    line.save()
    assert send_notices.apply().get() == 0
    assert mail.outbox == []
    notice = Notice.objects.get()
    assert notice.status == "skipped" and notice.last_error == "the line is no longer in service"


def test_a_notice_the_mail_server_refused_for_a_day_fails_and_is_not_sent_late(
    client, fresh_line, django_capture_on_commit_callbacks, settings
):
    post_usage(client, fresh_line, 10 * GB - 600 * MB, "a", django_capture_on_commit_callbacks)
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    send_notices.apply()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1), tick=False):
        assert send_notices.apply().get() == 0
    notice = Notice.objects.get()
    assert notice.status == "failed" and mail.outbox == []
