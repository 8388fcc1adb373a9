"""Low-data emails at 75 % and 90 % used and 24 h before expiry: once per package, in the user's language.
The partner's request and the expiry sweep owe them; the notice task sends them (docs/notifications.md)."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from accounts.services import apply_package
from accounts.tasks import send_expiry_notices, send_notices
from tests.builders import GB, MB, make_line, make_user
from tests.partner.helpers import record, signed_post


@pytest.fixture
def fresh_line(customer, package):
    """A line at the start of its 10 GB package."""
    return make_line(owner=customer, package=package, data_remaining_bytes=10 * GB, data_used_bytes=0)


def use(client, line, size, record_id, capture, **period):
    with capture(execute=True):
        assert signed_post(client, {"records": [record(line, id=record_id, bytes=size, **period)]}).status_code == 200
    send_notices.apply()  # what the worker does after the commit
    line.refresh_from_db()
    return line


def test_75_and_90_percent_emails_are_sent_once_each(client, fresh_line, django_capture_on_commit_callbacks):
    line = use(client, fresh_line, 7 * GB, "a", django_capture_on_commit_callbacks)
    assert mail.outbox == []

    line = use(client, line, GB // 2, "b", django_capture_on_commit_callbacks)  # 75 % used
    assert [m.subject for m in mail.outbox] == [f"Your eSIM {line.iccid} has used 75% of its data"]
    assert mail.outbox[0].to == ["alice@example.com"]
    assert "2.50 GB of 10 GB left" in mail.outbox[0].body
    assert f"/lines/{line.pk}/" in mail.outbox[0].body
    assert line.usage_notice_level == 75

    line = use(client, line, 100 * MB, "c", django_capture_on_commit_callbacks)  # still between 75 and 90
    assert len(mail.outbox) == 1

    line = use(client, line, 2 * GB, "d", django_capture_on_commit_callbacks)  # past 90 %: 95 % used
    assert mail.outbox[-1].subject == f"Your eSIM {line.iccid} has used 95% of its data"
    line = use(client, line, 10 * MB, "e", django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 2


def test_a_jump_past_90_percent_sends_only_the_90_percent_email(client, fresh_line, django_capture_on_commit_callbacks):
    use(client, fresh_line, 9 * GB + 500 * MB, "a", django_capture_on_commit_callbacks)
    # The figure reached, not the level crossed (issue 12: "used 75 %" was said at 94 %).
    assert [m.subject for m in mail.outbox] == [f"Your eSIM {fresh_line.iccid} has used 94% of its data"]


def test_a_duplicate_record_sends_nothing(client, fresh_line, django_capture_on_commit_callbacks):
    use(client, fresh_line, 8 * GB, "a", django_capture_on_commit_callbacks)
    mail.outbox.clear()
    fresh_line.usage_notice_level = 0  # even if the flag were lost, a duplicate applies nothing
    fresh_line.save()
    use(client, fresh_line, 8 * GB, "a", django_capture_on_commit_callbacks)
    assert mail.outbox == []


def test_a_new_package_arms_the_notices_again(client, fresh_line, package, django_capture_on_commit_callbacks):
    line = use(client, fresh_line, 9 * GB + 500 * MB, "a", django_capture_on_commit_callbacks)
    applied_at = timezone.now() - timedelta(minutes=10)
    apply_package(line=line, package=package, now=applied_at)  # 10 GB + 524 MB left of a 10 GB package
    line.refresh_from_db()
    assert line.usage_notice_level == 0
    # Usage of the new package's period (an earlier period's would not be charged to it: test_usage_periods.py).
    new_period = {
        "start": (applied_at + timedelta(minutes=1)).isoformat(),
        "end": (applied_at + timedelta(minutes=5)).isoformat(),
    }
    use(client, line, 8 * GB + 600 * MB, "b", django_capture_on_commit_callbacks, **new_period)
    assert [m.subject.split()[-4] for m in mail.outbox] == ["94%", "80%"]  # 8.6 GB used, 1.9 GB of the 10 GB left


def test_no_email_is_sent_before_the_batch_commits(client, fresh_line, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        signed_post(client, {"records": [record(fresh_line, id="a", bytes=8 * GB)]})
    assert mail.outbox == []
    assert callbacks  # the email waits for the commit


def test_a_line_without_an_email_address_gets_no_email_and_no_error(
    client, package, django_capture_on_commit_callbacks
):
    phone_user = make_user(email="", phone="+8613800000000")
    line = make_line(owner=phone_user, package=package, data_remaining_bytes=10 * GB, data_used_bytes=0)
    use(client, line, 9 * GB, "a", django_capture_on_commit_callbacks)
    assert mail.outbox == []
    assert line.usage_notice_level == 90


def test_expiry_email_is_sent_once_24_hours_before_the_end(customer, package, django_capture_on_commit_callbacks):
    now = timezone.now()
    soon = make_line(owner=customer, package=package, expires_at=now + timedelta(hours=23))
    later = make_line(owner=customer, package=package, expires_at=now + timedelta(hours=25))
    with django_capture_on_commit_callbacks(execute=True):
        assert send_expiry_notices() == 1
    send_notices.apply()
    assert [m.subject for m in mail.outbox] == [f"Your eSIM {soon.iccid} expires within 24 hours"]
    with django_capture_on_commit_callbacks(execute=True):
        assert send_expiry_notices() == 0
    send_notices.apply()
    assert len(mail.outbox) == 1

    with time_machine.travel(now + timedelta(hours=2), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert send_expiry_notices() == 1
        send_notices.apply()
    assert mail.outbox[-1].subject == f"Your eSIM {later.iccid} expires within 24 hours"


def test_expiry_email_is_armed_again_by_a_new_package(customer, package, django_capture_on_commit_callbacks):
    now = timezone.now()
    line = make_line(owner=customer, package=package, expires_at=now + timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        send_expiry_notices()
    send_notices.apply()
    apply_package(line=line, package=package, now=now)
    with time_machine.travel(now + timedelta(days=29, hours=1), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert send_expiry_notices() == 1
        send_notices.apply()
    assert len(mail.outbox) == 2


def test_expiry_email_speaks_the_users_language(package, django_capture_on_commit_callbacks):
    user = make_user(email="li@example.com", language="zh-hans", time_zone="Asia/Shanghai")
    make_line(owner=user, package=package, expires_at=timezone.now() + timedelta(hours=3))
    with django_capture_on_commit_callbacks(execute=True):
        send_expiry_notices()
    send_notices.apply()
    # Django's own zh-Hans formats: the end date reads 2026年11月24日 in Shanghai time.
    assert "年" in mail.outbox[0].body and "月" in mail.outbox[0].body


def test_expired_or_suspended_lines_get_no_expiry_email(customer, package, django_capture_on_commit_callbacks):
    now = timezone.now()
    make_line(owner=customer, package=package, expires_at=now - timedelta(hours=1))
    make_line(owner=customer, package=package, status="suspended", expires_at=now + timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert send_expiry_notices() == 0
    send_notices.apply()
    assert mail.outbox == []


def test_a_terminated_line_gets_no_usage_email(client, fresh_line, django_capture_on_commit_callbacks):
    fresh_line.status = "terminated"
    fresh_line.save()
    line = use(client, fresh_line, 9 * GB + 500 * MB, "a", django_capture_on_commit_callbacks)
    assert mail.outbox == []
    assert line.data_used_bytes == 9 * GB + 500 * MB  # the usage itself is still recorded
