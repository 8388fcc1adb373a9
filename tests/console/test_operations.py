"""The operations page counts a seeded scenario; /healthz tells the load balancer the truth, and nothing more."""

from datetime import timedelta

import time_machine
from django.utils import timezone

from accounts import heartbeats
from accounts.models import Line, UsageRecord
from accounts.services.line_status import suspend_line
from renewals.models import Alert
from renewals.tasks import dispatch_renewals
from tests.builders import make_charge, make_line, make_package, make_renewal


def test_operations_page_counts_the_seeded_scenario(support_client, customer):
    client, _user = support_client
    now = timezone.now()
    package = make_package()
    usd = make_package(currency="USD", price_minor=500)
    line = lambda: make_line(owner=customer)  # noqa: E731 - one line per open renewal (a database constraint)
    make_renewal(line=line(), package=package, status="due")
    make_renewal(line=line(), package=package, status="due")
    make_renewal(line=line(), package=package, status="retry_scheduled")
    make_renewal(line=line(), package=package, status="requires_action")
    failed_line = line()
    make_renewal(
        line=failed_line,
        package=package,
        status="failed",
        completed_at=now - timedelta(hours=2),
        line_suspended_at=now - timedelta(hours=1),
    )
    failed_line.status = Line.Status.SUSPENDED  # as the engine does it: a save, recorded in the history
    failed_line.save()
    suspend_line(line_id=line().pk, reason="fraud", actor=None, now=now)  # an operator's suspension
    with time_machine.travel(now - timedelta(days=3)):
        suspend_line(line_id=line().pk, reason="old", actor=None, now=now - timedelta(days=3))
    make_renewal(line=line(), package=package, status="failed", completed_at=now - timedelta(days=3))
    make_charge(user=customer, package=package, status="succeeded", amount_minor=9800, settled_at=now)
    make_charge(
        user=customer, package=package, status="refunded", amount_minor=1000, refunded_minor=1000, settled_at=now
    )
    make_charge(user=customer, package=usd, status="succeeded", amount_minor=500, settled_at=now)
    make_charge(user=customer, package=package, status="failed", amount_minor=7777)
    Alert.objects.create(kind="repeated_failures", line=failed_line, message="failing again and again")

    page = client.get("/admin/operations/")
    assert page.status_code == 200
    assert page.context["counts"] == {
        "due": 2,
        "retrying": 1,
        "requires_action": 1,
        "failed_24h": 1,
        "suspended_24h": 2,
    }
    today = {row["currency"]: row["amount_minor"] for row in page.context["revenue_today"]}
    assert today == {"CNY": 9800, "USD": 500}
    html = page.content.decode()
    assert "CNY 98.00" in html and "USD 5.00" in html and "failing again and again" in html
    assert 'id="ops-dispatcher" class="stale"' in html  # never ran
    assert 'id="ops-usage" class="stale"' in html


def test_dispatcher_pass_and_usage_batch_turn_the_ages_green(support_client, line):
    client, _user = support_client
    dispatch_renewals.apply()
    UsageRecord.objects.create(
        partner_record_id="r1",
        line=line,
        bytes=1,
        period_start=timezone.now() - timedelta(minutes=5),
        period_end=timezone.now(),
    )
    assert heartbeats.last_beat(heartbeats.DISPATCHER) is not None
    html = client.get("/admin/operations/").content.decode()
    assert 'id="ops-dispatcher" class="fresh"' in html and 'id="ops-usage" class="fresh"' in html


def test_healthz_is_503_until_the_dispatcher_has_run_then_200(client, db):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (body["database"], body["redis"], body["dispatcher"]) == ("ok", "ok", "stale")
    assert isinstance(body["broker_queue_length"], int)
    heartbeats.beat(heartbeats.DISPATCHER)
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert set(response.json()) == {
        "database",
        "redis",
        "broker_queue_length",
        "dispatcher_last_pass_age_seconds",
        "dispatcher",
        "network_outbox",
        "network_commands_dead_lettered",
        "customer_notices",
        "customer_notices_failed_48h",
        "status",
    }


def test_healthz_reports_redis_down_without_details(client, db, settings):
    heartbeats.beat(heartbeats.DISPATCHER)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"] == "down" and response.json()["broker_queue_length"] is None
    assert "127.0.0.1" not in response.content.decode()


def test_operations_page_in_chinese_for_a_chinese_speaking_operator(db):
    from tests.console.conftest import admin_client_for

    client, user = admin_client_for("support")
    user.language = "zh-hans"
    user.save(update_fields=["language"])
    page = client.get("/admin/operations/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "待续费" in page and "最近 24 小时失败" in page


def test_a_foreground_dispatcher_pass_counts_as_a_pass(support_client):
    from renewals.services.dispatcher import run_dispatcher

    now = timezone.now()
    run_dispatcher(now=now, enqueue=False)  # what `renewals_tick --inline` runs
    assert heartbeats.last_beat(heartbeats.DISPATCHER) == now


def test_a_notice_out_of_attempts_shows_on_the_operations_page_and_in_healthz(support_client, customer):
    from accounts.models import Notice

    client, _user = support_client
    heartbeats.beat(heartbeats.DISPATCHER)
    assert client.get("/healthz").json()["customer_notices"] == "ok"
    notice = Notice.objects.create(
        user=customer,
        kind="usage",
        dedup_key="usage:test",
        status=Notice.Status.FAILED,
        attempts=6,
        last_error="SMTPServerDisconnected: Connection unexpectedly closed",
    )
    page = client.get("/admin/operations/")
    assert list(page.context["failed_notices"]) == [notice]
    assert "SMTPServerDisconnected" in page.content.decode()
    assert "<td>Data usage alert</td>" in page.content.decode()  # the kind by its label, not "usage"
    body = client.get("/healthz").json()
    assert (body["customer_notices"], body["customer_notices_failed_48h"]) == ("attention", 1)
    # An old failure stays on the operations page but no longer makes /healthz say "attention".
    Notice.objects.filter(pk=notice.pk).update(created_at=timezone.now() - timedelta(days=3))
    assert client.get("/healthz").json()["customer_notices"] == "ok"
    assert list(client.get("/admin/operations/").context["failed_notices"]) == [notice]


def test_notices_are_listed_read_only_in_the_admin(support_client, customer):
    from accounts.models import Notice

    client, _user = support_client
    notice = Notice.objects.create(user=customer, kind="expiry", dedup_key="expiry:test")
    listing = client.get("/admin/accounts/notice/")
    assert listing.status_code == 200 and "expiry" in listing.content.decode()
    detail = client.get(f"/admin/accounts/notice/{notice.pk}/change/")
    assert detail.status_code == 200 and "expiry:test" in detail.content.decode()
    assert client.post(f"/admin/accounts/notice/{notice.pk}/change/", {"status": "sent"}).status_code == 403
    assert client.get("/admin/accounts/notice/add/").status_code == 403
    notice.refresh_from_db()
    assert notice.status == "pending"


def test_revenue_shows_gross_refunds_and_net_per_currency(support_client, customer):
    client, _user = support_client
    now = timezone.now()
    package = make_package(price_minor=1800)
    for _ in range(4):
        make_charge(user=customer, package=package, status="succeeded", amount_minor=1800, settled_at=now)
    make_charge(
        user=customer, package=package, status="refunded", amount_minor=1800, refunded_minor=1800, settled_at=now
    )
    page = client.get("/admin/operations/")
    (row,) = page.context["revenue_today"]
    assert (row["gross_minor"], row["refunded_minor"], row["amount_minor"]) == (9000, 1800, 7200)
    assert (row["charges"], row["refunds"]) == (5, 1)
    html = page.content.decode()
    cny = html[html.index('id="ops-revenue-cny"') :]
    cny = cny[: cny.index("</tr>")]
    assert "CNY 90.00" in cny and "CNY 18.00" in cny and "CNY 72.00" in cny
    assert "5 charges" in cny and "1 refunded" in cny
