"""The low-data email is written in the customer's own language."""

from django.core import mail

from accounts.tasks import send_notices
from tests.builders import GB, make_line, make_user
from tests.partner.helpers import record, signed_post


def test_low_data_email_speaks_the_users_language(client, package, django_capture_on_commit_callbacks):
    user = make_user(email="li@example.com", language="zh-hans")
    line = make_line(owner=user, package=package, data_remaining_bytes=10 * GB, data_used_bytes=0)
    with django_capture_on_commit_callbacks(execute=True):
        signed_post(client, {"records": [record(line, id="zh-1", bytes=8 * GB)]})
    send_notices.apply()
    assert mail.outbox[0].subject == f"您的 eSIM {line.iccid} 已用掉 80% 的流量"
    assert "请充值或开启自动续费" in mail.outbox[0].body
