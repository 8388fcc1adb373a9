"""Operators give a line to a customer found by email or phone: a form in MB/GB with the package's
validity, a confirmation page, history, and the customer told by email in their language."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.models import LogEntry
from django.core import mail
from django.utils import timezone

from accounts.models import ChangeRecord, Line, Notice
from accounts.tasks import send_notices
from tests.builders import GB, MB, make_line, make_package, make_user

ASSIGN = "/admin/accounts/line/assign/"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def travel(db):
    return make_package(name="Travel 10 GB", data_allowance_bytes=10 * GB, validity_days=30)


def fields(*, customer: str, package, **extra) -> dict:
    return {
        "customer": customer,
        "package": package.pk,
        "iccid": "89860000000000000042",
        "smdp_address": "smdp.example.com",
        "matching_id": "AB-42",
        "label": "",
        "data_amount": "",
        "data_unit": "GB",
        "starts_on": timezone.localdate(timezone=SHANGHAI).isoformat(),
        "validity_days": "",
        "reason": "",
        **extra,
    }


def in_shanghai(operator):
    operator.time_zone = "Asia/Shanghai"
    operator.save(update_fields=["time_zone"])


def test_assigning_by_email_asks_first_then_creates_the_line_with_history_and_the_customers_email(
    finance_client, travel
):
    client, operator = finance_client
    in_shanghai(operator)
    customer = make_user(email="bob@example.com", language="zh-hans")
    data = fields(customer="BOB@example.com", package=travel, data_amount="2.5", reason="goodwill")

    preview = client.post(ASSIGN, data)
    page = preview.content.decode()
    assert preview.status_code == 200 and "Yes, assign the line" in page
    assert "2.50 GB" in page and "bob@example.com" in page
    assert not Line.objects.filter(iccid="89860000000000000042").exists()  # nothing written yet

    done = client.post(ASSIGN, {**data, "confirm": "yes"})
    assert done.status_code == 302 and done["Location"] == f"/admin/accounts/user/{customer.pk}/change/"
    line = Line.objects.get(iccid="89860000000000000042")
    starts = datetime.combine(timezone.localdate(timezone=SHANGHAI), time.min, tzinfo=SHANGHAI)
    assert (line.owner, line.package, line.status) == (customer, travel, Line.Status.ACTIVE)
    assert line.data_remaining_bytes == 2560 * MB
    assert line.package_started_at == starts and line.expires_at == starts + timedelta(days=30)
    record = ChangeRecord.objects.get(action="assigned", object_id=str(line.pk))
    assert record.actor == operator and record.reason == "goodwill" and record.after["owner"] == customer.pk
    assert LogEntry.objects.filter(object_id=str(line.pk), user=operator).exists()

    assert send_notices.apply().get() == 1
    [message] = mail.outbox
    assert message.to == ["bob@example.com"]
    assert message.subject == f"您的账户已添加新的 eSIM：{line.iccid}"
    assert "流量：2.50 GB。" in message.body and f"/lines/{line.pk}/" in message.body


def test_assigning_by_phone_uses_the_packages_figures_and_writes_english_for_an_english_customer(
    finance_client, travel
):
    client, _operator = finance_client
    customer = make_user(email="carol@example.com", phone="+8613800138000")
    data = fields(customer="+86 138 0013 8000", package=travel, validity_days="7")
    assert client.post(ASSIGN, {**data, "confirm": "yes"}).status_code == 302
    line = customer.lines.get()
    assert line.data_remaining_bytes == 10 * GB
    assert line.expires_at - line.package_started_at == timedelta(days=7)
    assert send_notices.apply().get() == 1
    [message] = mail.outbox
    assert message.subject == f"A new eSIM was added to your account: {line.iccid}"
    assert "Data: 10 GB." in message.body


def test_the_form_starts_today_in_the_operators_zone_and_in_mb_if_asked(finance_client, travel):
    client, operator = finance_client
    in_shanghai(operator)
    customer = make_user(email="dan@example.com")
    page = client.get(ASSIGN, {"customer": customer.email}).content.decode()
    assert f'value="{timezone.localdate(timezone=SHANGHAI).isoformat()}"' in page
    assert 'value="dan@example.com"' in page
    client.post(
        ASSIGN, {**fields(customer=customer.email, package=travel, data_amount="300", data_unit="MB"), "confirm": "yes"}
    )
    assert customer.lines.get().data_remaining_bytes == 300 * MB


def test_an_unknown_customer_is_a_form_error(finance_client, travel):
    client, _operator = finance_client
    response = client.post(ASSIGN, fields(customer="nobody@example.com", package=travel))
    assert response.status_code == 200
    assert "No customer has the email address or phone number nobody@example.com." in response.content.decode()
    response = client.post(ASSIGN, fields(customer="not a phone", package=travel))
    assert "phone number in international form" in response.content.decode()
    assert not Line.objects.exists()


def test_a_taken_iccid_or_a_validity_already_over_is_a_form_error(finance_client, travel):
    client, _operator = finance_client
    customer = make_user(email="erin@example.com")
    taken = make_line(owner=None)
    page = client.post(ASSIGN, fields(customer=customer.email, package=travel, iccid=taken.iccid)).content.decode()
    assert "This ICCID is already imported." in page
    long_ago = (timezone.localdate() - timedelta(days=60)).isoformat()
    page = client.post(ASSIGN, fields(customer=customer.email, package=travel, starts_on=long_ago)).content.decode()
    assert "already be over" in page
    assert not customer.lines.exists()


def test_support_may_not_assign_and_anonymous_is_sent_to_log_in(support_client, client, travel):
    support, _user = support_client
    customer = make_user(email="fay@example.com")
    assert support.get(ASSIGN).status_code == 403
    assert (
        support.post(ASSIGN, {**fields(customer=customer.email, package=travel), "confirm": "yes"}).status_code == 403
    )
    assert "assign-line-link" not in support.get(f"/admin/accounts/user/{customer.pk}/change/").content.decode()
    response = client.get(ASSIGN)
    assert response.status_code == 302 and "login" in response["Location"]
    assert not Line.objects.exists() and not Notice.objects.exists()


def test_the_customer_page_links_to_the_form_with_the_customer_filled_in(finance_client):
    client, _operator = finance_client
    customer = make_user(email="gus@example.com")
    page = client.get(f"/admin/accounts/user/{customer.pk}/change/").content.decode()
    assert f'href="{ASSIGN}?customer=gus%40example.com" id="assign-line-link"' in page


def test_the_line_pages_find_the_owner_by_search_and_show_data_in_mb_or_gb(superuser_client, customer):
    client, _operator = superuser_client
    make_line(owner=customer, data_remaining_bytes=1536 * MB)
    add = client.get("/admin/accounts/line/add/").content.decode()
    assert "admin-autocomplete" in add and 'name="owner"' in add
    changelist = client.get("/admin/accounts/line/").content.decode()
    assert "1.50 GB" in changelist and "1610612736" not in changelist
