"""Usage records in day partitions (docs/usage.md, "History"): a retry is still a duplicate, a
record older than the dedup window is refused, a day without a partition still stores its
records, and a new day's partition takes that day's rows from the default partition."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts import partitions
from accounts.models import UsageRecord
from tests.builders import MB
from tests.partner.helpers import record, signed_post


@pytest.fixture(autouse=True)
def fresh_partition_cache():
    partitions.forget_known_days()
    yield
    partitions.forget_known_days()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stored_in(partner_record_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM accounts_usagerecord WHERE partner_record_id = %s",
            [partner_record_id],
        )
        return cursor.fetchone()[0]


def drop_partition(day) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {partitions.partition_name(day)}")


def days_ago(days: int, *, hour: int = 10) -> datetime:
    now = timezone.now()
    return datetime(now.year, now.month, now.day, hour, tzinfo=UTC) - timedelta(days=days)


def test_retried_record_is_a_duplicate_in_the_same_and_a_later_batch(client, line):
    start = days_ago(2)
    used_before = line.data_used_bytes
    first = record(line, id="retry-1", bytes=MB, start=iso(start), end=iso(start + timedelta(minutes=5)))
    assert signed_post(client, {"records": [first, first]}).json() == {"accepted": 1, "duplicates": 1}
    assert signed_post(client, {"records": [first]}).json() == {"accepted": 0, "duplicates": 1}
    line.refresh_from_db()
    assert line.data_used_bytes == used_before + MB
    assert UsageRecord.objects.filter(partner_record_id="retry-1").count() == 1
    assert stored_in("retry-1") == partitions.partition_name(start.date())


def test_record_older_than_the_dedup_window_is_refused_with_the_reason(client, line):
    old = timezone.now() - settings.USAGE_DEDUP_WINDOW - timedelta(hours=1)
    fresh = days_ago(1)
    response = signed_post(
        client,
        {
            "records": [
                record(line, id="too-old", bytes=MB, start=iso(old), end=iso(old + timedelta(minutes=5))),
                record(line, id="fine", bytes=MB, start=iso(fresh), end=iso(fresh + timedelta(minutes=5))),
            ]
        },
    )
    assert response.status_code == 207
    days = settings.USAGE_DEDUP_WINDOW.days
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [
            {
                "index": 0,
                "id": "too-old",
                "error": f"start is older than the dedup window ({days} days): a duplicate could no longer be detected",
            }
        ],
    }
    assert not UsageRecord.objects.filter(partner_record_id="too-old").exists()


def test_record_of_a_day_without_a_partition_gets_one_on_demand(client, line):
    start = days_ago(3)
    drop_partition(start.date())
    body = {"records": [record(line, id="no-partition", bytes=MB, start=iso(start), end=iso(start))]}
    assert signed_post(client, body).json() == {"accepted": 1, "duplicates": 0}
    assert stored_in("no-partition") == partitions.partition_name(start.date())
    assert signed_post(client, body).json() == {"accepted": 0, "duplicates": 1}


def test_a_new_days_partition_takes_that_days_rows_from_the_default_partition(client, line):
    start = days_ago(4)
    drop_partition(start.date())
    with connection.cursor() as cursor:  # as if on-demand creation had not got its lock
        cursor.execute(
            "INSERT INTO accounts_usagerecord (partner_record_id, line_id, bytes, period_start, period_end, received_at) "
            "VALUES ('in-default', %s, 1, %s, %s, now())",
            [line.pk, start, start],
        )
    assert stored_in("in-default") == partitions.DEFAULT_PARTITION

    assert partitions.ensure_day_partitions([start.date()]) == [start.date()]

    assert stored_in("in-default") == partitions.partition_name(start.date())
    body = {"records": [record(line, id="in-default", bytes=1, start=iso(start), end=iso(start))]}
    assert signed_post(client, body).json() == {"accepted": 0, "duplicates": 1}


def test_partitions_are_made_for_the_window_and_two_days_ahead(db):
    now = timezone.now()
    for day in (now.date() + timedelta(days=2), now.date() - timedelta(days=10)):
        drop_partition(day)
    made = partitions.make_partitions_ahead(now=now)
    assert set(made) == {now.date() + timedelta(days=2), now.date() - timedelta(days=10)}
    assert now.date() + timedelta(days=2) in partitions.day_partitions()
