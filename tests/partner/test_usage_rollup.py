"""The hourly roll-up of usage (accounts.UsageHour, docs/usage.md "Daily roll-ups"): written in the
transaction that inserts the records, only for records actually inserted, and read by the chart
and the data export instead of the raw records."""

import importlib
from datetime import UTC, datetime, time, timedelta

from django.apps import apps
from django.db import connection

from accounts.models import UsageHour, UsageRecord
from renewals.services.data_export import _daily_usage
from tests.builders import MB, make_line
from tests.partner.helpers import DAY, NEXT_DAY, USAGE_DAY, record, signed_post


def hours(line) -> dict[str, tuple[int, int]]:
    return {
        f"{row.hour.astimezone(UTC):%Y-%m-%d %H}": (row.bytes, row.records)
        for row in UsageHour.objects.filter(line=line).order_by("hour")
    }


def post(client, body) -> dict:
    response = signed_post(client, body)
    assert response.status_code in (200, 207), response.content
    return response.json()


def test_a_batch_adds_its_records_to_the_hour_their_period_starts_in(client, customer, package):
    line = make_line(owner=customer, package=package)
    post(
        client,
        {
            "records": [
                record(line, id="a", bytes=MB, start=f"{DAY}T10:00:00Z", end=f"{DAY}T10:05:00Z"),
                record(line, id="b", bytes=2 * MB, start=f"{DAY}T10:55:00Z", end=f"{DAY}T11:00:00Z"),
                record(line, id="c", bytes=4 * MB, start=f"{DAY}T11:00:00Z", end=f"{DAY}T11:05:00Z"),
            ]
        },
    )
    assert hours(line) == {f"{DAY} 10": (3 * MB, 2), f"{DAY} 11": (4 * MB, 1)}


def test_a_duplicate_batch_does_not_double_the_day(client, customer, package):
    line = make_line(owner=customer, package=package)
    body = {"records": [record(line, id=f"r-{i}", bytes=MB) for i in range(3)]}
    assert post(client, body)["accepted"] == 3
    assert post(client, body) == {"accepted": 0, "duplicates": 3}
    assert hours(line) == {f"{DAY} 10": (3 * MB, 3)}
    assert list(_daily_usage([line.pk])) == [{"line_id": line.pk, "day": f"{DAY}", "bytes": 3 * MB, "records": 3}]


def test_an_id_repeated_inside_a_batch_and_rejected_records_add_nothing(client, customer, package):
    line = make_line(owner=customer, package=package)
    body = {
        "records": [
            record(line, id="same", bytes=MB),
            record(line, id="same", bytes=5 * MB),
            {
                "id": "nobody",
                "iccid": "8988000000000000999",
                "bytes": 7 * MB,
                "start": f"{DAY}T10:00:00Z",
                "end": f"{DAY}T10:05:00Z",
            },
            record(line, id="bad", bytes=-1),
        ]
    }
    answer = post(client, body)
    assert (answer["accepted"], answer["duplicates"], len(answer["rejected"])) == (1, 1, 2)
    assert hours(line) == {f"{DAY} 10": (MB, 1)}


def test_a_record_spanning_midnight_utc_counts_on_the_day_it_starts(client, customer, package):
    line = make_line(owner=customer, package=package)
    post(
        client,
        {"records": [record(line, id="night", bytes=MB, start=f"{DAY}T23:55:00Z", end=f"{NEXT_DAY}T00:05:00Z")]},
    )
    assert hours(line) == {f"{DAY} 23": (MB, 1)}
    assert [row["day"] for row in _daily_usage([line.pk])] == [f"{DAY}"]


def test_a_record_of_the_previous_package_is_in_the_roll_up_too(client, customer, package):
    """The chart shows usage history, not the package balance: an uncharged record still counts."""
    line = make_line(owner=customer, package=package)
    line.package_started_at = datetime.combine(USAGE_DAY, time(12), tzinfo=UTC)
    line.save(update_fields=["package_started_at"])
    post(client, {"records": [record(line, id="old", bytes=MB)]})
    assert UsageRecord.objects.get(partner_record_id="old").charged is False
    assert hours(line) == {f"{DAY} 10": (MB, 1)}


def test_the_migration_backfills_the_roll_up_from_the_records_already_stored(customer, package):
    line = make_line(owner=customer, package=package)
    start = datetime(2026, 10, 30, 22, 10, tzinfo=UTC)
    UsageRecord.objects.bulk_create(
        UsageRecord(
            partner_record_id=f"old-{i}",
            line=line,
            bytes=MB,
            period_start=start + timedelta(minutes=20 * i),
            period_end=start + timedelta(minutes=20 * i + 5),
        )
        for i in range(6)
    )
    migration = importlib.import_module("accounts.migrations.0016_usage_hour")
    with connection.schema_editor() as editor:
        migration.backfill(apps, editor)
    assert hours(line) == {"2026-10-30 22": (3 * MB, 3), "2026-10-30 23": (3 * MB, 3)}
