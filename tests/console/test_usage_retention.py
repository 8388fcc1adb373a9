"""The operator's side of usage history (docs/usage.md, "History"): the retention period is edited
in the admin, refused when shorter than the dedup window, and its changes kept in the history; the
usage records' list, search and page still work on the partitioned table."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import ChangeRecord, UsageRecord, UsageRetention


def test_operator_cannot_keep_records_shorter_than_the_dedup_window(finance_client):
    client, operator = finance_client
    retention = UsageRetention.current()
    url = f"/admin/accounts/usageretention/{retention.pk}/change/"
    assert client.get(url).status_code == 200

    response = client.post(url, {"days": settings.USAGE_DEDUP_WINDOW.days - 1})
    assert response.status_code == 200
    assert "Keep records at least" in response.content.decode()
    retention.refresh_from_db()
    assert retention.days == 400

    history_form = "accounts-changerecord-content_type-object_id"
    response = client.post(url, {"days": 90, f"{history_form}-TOTAL_FORMS": 0, f"{history_form}-INITIAL_FORMS": 0})
    assert response.status_code == 302
    retention.refresh_from_db()
    assert retention.days == 90
    change = ChangeRecord.objects.get(object_id=str(retention.pk), content_type__model="usageretention")
    assert (change.actor, change.before, change.after) == (operator, {"days": 400}, {"days": 90})


def test_retention_setting_needs_an_operator(client, customer_client):
    url = "/admin/accounts/usageretention/1/change/"
    assert client.get(url).status_code == 302
    assert customer_client.get(url).status_code == 302


def test_admin_lists_searches_and_shows_partitioned_records(superuser_client, line):
    client, _operator = superuser_client
    start = timezone.now() - timedelta(days=1)
    stored = UsageRecord.objects.create(
        partner_record_id="admin-1", line=line, bytes=5, period_start=start, period_end=start
    )
    UsageRecord.objects.create(partner_record_id="admin-2", line=line, bytes=6, period_start=start, period_end=start)
    listing = client.get("/admin/accounts/usagerecord/")
    assert listing.status_code == 200
    assert "admin-1" in listing.content.decode() and "admin-2" in listing.content.decode()
    found = client.get("/admin/accounts/usagerecord/", {"q": "admin-1"}).content.decode()
    assert "admin-1" in found and "admin-2" not in found
    assert line.iccid in client.get("/admin/accounts/usagerecord/", {"q": line.iccid}).content.decode()
    assert client.get(f"/admin/accounts/usagerecord/{stored.pk}/change/").status_code == 200
