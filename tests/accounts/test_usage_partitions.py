"""Retention of raw usage records (docs/usage.md, "History"): the beat task drops the day
partitions older than the operator's period and never one inside the dedup window; the operator's
setting refuses a shorter period (tests/console/test_usage_retention.py); the
migration that partitions the table keeps its rows."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from accounts import partitions, tasks
from accounts.models import UsageRecord, UsageRetention
from tests.builders import make_line, make_package, make_user


@pytest.fixture(autouse=True)
def fresh_partition_cache():
    partitions.forget_known_days()
    yield
    partitions.forget_known_days()


def today():
    return timezone.now().astimezone(UTC).date()


def test_retention_drops_only_the_days_older_than_the_period(db):
    UsageRetention.objects.create(pk=1, days=60)
    old, kept = today() - timedelta(days=61), today() - timedelta(days=59)
    partitions.ensure_day_partitions([old, kept])

    assert tasks.maintain_usage_partitions() == 1

    days = partitions.day_partitions()
    assert old not in days
    assert kept in days
    assert today() - timedelta(days=settings.USAGE_DEDUP_WINDOW.days) in days


def test_retention_never_drops_a_day_inside_the_dedup_window(db):
    UsageRetention.objects.create(pk=1, days=60)
    UsageRetention.objects.filter(pk=1).update(days=1)  # past the form's check, as a bad row would be
    window_days = settings.USAGE_DEDUP_WINDOW.days
    inside = [today() - timedelta(days=n) for n in range(window_days + 1)]
    partitions.ensure_day_partitions(inside)

    tasks.maintain_usage_partitions()

    assert set(inside) <= set(partitions.day_partitions())


def test_retention_deletes_old_rows_left_in_the_default_partition(db):
    line = make_line(owner=None, package=make_package())
    moment = datetime.combine(today() - timedelta(days=500), datetime.min.time(), tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO accounts_usagerecord (partner_record_id, line_id, bytes, period_start, period_end, received_at) "
            "VALUES ('ancient', %s, 1, %s, %s, now())",
            [line.pk, moment, moment],
        )
    tasks.maintain_usage_partitions()
    assert not UsageRecord.objects.filter(partner_record_id="ancient").exists()


@pytest.mark.django_db(transaction=True)
def test_partitioning_migration_keeps_existing_rows():
    before, after = [("accounts", "0015_operator_permissions_after_merge")], [("accounts", "0016_usage_partitions")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_apps = executor.loader.project_state(before).apps
        owner = make_user(email="migrated@example.com")
        Line = old_apps.get_model("accounts", "Line")
        line = Line.objects.create(
            iccid="8988000000000000777", smdp_address="smdp.example", matching_id="M-1", owner_id=owner.pk
        )
        OldRecord = old_apps.get_model("accounts", "UsageRecord")
        long_ago = datetime(2024, 1, 15, 8, tzinfo=UTC)
        for n, start in enumerate([long_ago, timezone.now() - timedelta(days=1)]):
            OldRecord.objects.create(
                partner_record_id=f"kept-{n}", line_id=line.pk, bytes=100 + n, period_start=start, period_end=start
            )
        ids = sorted(OldRecord.objects.values_list("id", flat=True))

        executor = MigrationExecutor(connection)
        executor.migrate(after)

        rows = sorted(UsageRecord.objects.values_list("id", "partner_record_id", "bytes"))
        assert rows == [(ids[0], "kept-0", 100), (ids[1], "kept-1", 101)]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tableoid::regclass::text FROM accounts_usagerecord WHERE partner_record_id = 'kept-0'"
            )
            assert cursor.fetchone()[0] == partitions.partition_name(long_ago.date())
        # The identity sequence carries on after the copied ids.
        newer = UsageRecord.objects.create(
            partner_record_id="new", line_id=line.pk, bytes=1, period_start=timezone.now(), period_end=timezone.now()
        )
        assert newer.pk > ids[-1]
    finally:
        call_command("migrate", verbosity=0, interactive=False)
