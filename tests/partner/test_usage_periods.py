"""Usage lands on the package whose period it falls in (docs/usage.md): a record whose period
ended before the current package began belongs to the package it replaced. It is stored and
counted in the line's used data, but lowers nothing of the new package, sends no notice and
triggers no renewal, whatever order the records and the package arrive in."""

import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Line, NetworkCommand, Notice, UsageRecord
from accounts.services import apply_package
from accounts.tasks import send_notices
from tests.builders import GB, MB, make_line
from tests.partner.helpers import record, signed_post


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def period(end):
    return {"start": iso(end - timedelta(minutes=5)), "end": iso(end)}


def post(client, line, *records, capture=None):
    body = {"records": [record(line, id=rid, bytes=size, **period(end)) for rid, size, end in records]}
    if capture is None:
        response = signed_post(client, body)
    else:
        with capture(execute=True):
            response = signed_post(client, body)
        send_notices.apply()  # the notice task's work after the commit (docs/notifications.md)
    assert response.status_code == 200, response.content
    line.refresh_from_db()
    return response.json()


@pytest.fixture
def renewed(customer, package):
    """A 10 GB line that used its old package down to 0 and got a fresh 10 GB package 1 hour ago."""
    line = make_line(owner=customer, package=package, data_remaining_bytes=0, data_used_bytes=10 * GB)
    started = timezone.now() - timedelta(hours=1)
    apply_package(line=line, package=package, now=started)
    line.refresh_from_db()
    assert line.package_started_at == started
    return line, started


def test_apply_package_records_when_the_package_began(customer, package):
    line = make_line(owner=customer, package=package)
    now = timezone.now()
    line = apply_package(line=line, package=package, now=now)
    line.refresh_from_db()
    assert line.package_started_at == now


def test_a_record_of_the_previous_package_lowers_nothing_of_the_new_one(client, renewed):
    line, started = renewed
    result = post(client, line, ("old", 300 * MB, started - timedelta(minutes=10)))
    assert result == {"accepted": 1, "duplicates": 0}  # within the window: normal boundary traffic
    assert line.data_remaining_bytes == 10 * GB
    assert line.data_used_bytes == 10 * GB + 300 * MB  # kept in the line's history
    assert UsageRecord.objects.get(partner_record_id="old").charged is False


def test_a_record_of_the_current_package_is_charged(client, renewed):
    line, started = renewed
    post(client, line, ("new", 300 * MB, started + timedelta(minutes=10)))
    assert line.data_remaining_bytes == 10 * GB - 300 * MB
    assert UsageRecord.objects.get(partner_record_id="new").charged is True


def test_a_record_straddling_the_start_belongs_to_the_new_package(client, renewed):
    line, started = renewed
    body = {
        "records": [record(line, id="across", bytes=MB, start=iso(started - timedelta(minutes=3)), end=iso(started))]
    }
    assert signed_post(client, body).status_code == 200
    line.refresh_from_db()
    assert line.data_remaining_bytes == 10 * GB - MB


def test_arrival_order_does_not_change_what_the_new_package_pays(client, customer, package):
    """The same late record of the old package, before or after the new package arrives."""
    now = timezone.now()
    old_end, started = now - timedelta(hours=2), now - timedelta(hours=1)
    early = make_line(owner=customer, package=package, data_remaining_bytes=0, data_used_bytes=10 * GB)
    late = make_line(owner=customer, package=package, data_remaining_bytes=0, data_used_bytes=10 * GB)

    post(client, early, ("early-old", 300 * MB, old_end))
    apply_package(line=early, package=package, now=started)
    apply_package(line=late, package=package, now=started)
    post(client, late, ("late-old", 300 * MB, old_end))
    early.refresh_from_db()
    late.refresh_from_db()
    assert early.data_remaining_bytes == late.data_remaining_bytes == 10 * GB
    assert early.data_used_bytes == late.data_used_bytes == 10 * GB + 300 * MB


def test_a_record_of_the_previous_package_sends_no_notice_for_the_new_one(
    client, customer, package, django_capture_on_commit_callbacks
):
    """The new package starts low (old overage deducted from it): an old record must not mail "90 % used"."""
    line = make_line(
        owner=customer,
        package=package,
        data_remaining_bytes=0,
        data_used_bytes=10 * GB,
        overage_bytes=9 * GB + 500 * MB,
    )
    started = timezone.now() - timedelta(hours=1)
    apply_package(line=line, package=package, now=started)
    line.refresh_from_db()
    assert (line.data_remaining_bytes, line.usage_notice_level) == (524 * MB, 0)
    post(client, line, ("old", MB, started - timedelta(minutes=10)), capture=django_capture_on_commit_callbacks)
    assert mail.outbox == [] and not Notice.objects.exists()
    assert line.usage_notice_level == 0
    post(client, line, ("new", MB, started + timedelta(minutes=10)), capture=django_capture_on_commit_callbacks)
    assert [m.subject.split()[-4] for m in mail.outbox] == [
        "94%"
    ]  # the new package's own usage does (523 MB of 10 GB left)


def test_a_record_of_the_previous_package_does_not_block_an_empty_new_package(client, customer, package):
    line = make_line(
        owner=customer, package=package, data_remaining_bytes=0, data_used_bytes=10 * GB, overage_bytes=10 * GB
    )
    started = timezone.now() - timedelta(hours=1)
    apply_package(line=line, package=package, now=started)  # all of it goes to the owed overage
    line.refresh_from_db()
    assert (line.data_remaining_bytes, line.data_blocked, line.status) == (0, False, Line.Status.ACTIVE)
    post(client, line, ("old", MB, started - timedelta(minutes=10)))
    assert (line.data_blocked, line.status) == (False, Line.Status.ACTIVE)
    assert not NetworkCommand.objects.filter(line=line, command="block_data").exists()


def test_a_record_of_the_previous_package_triggers_no_renewal(client, renewed, monkeypatch):
    line, started = renewed
    seen = []
    monkeypatch.setattr(
        "partner.services.usage.evaluate_triggers", lambda *, line_ids, now: seen.append(list(line_ids))
    )
    post(client, line, ("old", MB, started - timedelta(minutes=10)))
    assert seen == []
    post(client, line, ("new", MB, started + timedelta(minutes=10)))
    assert seen == [[line.pk]]


def test_a_record_older_than_the_window_is_stored_reported_and_logged(client, renewed, settings, caplog):
    line, started = renewed
    settings.USAGE_LATENESS_WINDOW = timedelta(hours=3)
    old_end = started - timedelta(hours=5)  # ended 6 h ago: past the 3 h window
    caplog.set_level(logging.INFO, logger="partner.services.usage")
    result = post(client, line, ("stale", 300 * MB, old_end), ("fresh", MB, started + timedelta(minutes=1)))
    assert result == {"accepted": 2, "duplicates": 0, "late": 1, "late_records": [{"index": 0, "id": "stale"}]}
    assert line.data_remaining_bytes == 10 * GB - MB
    assert UsageRecord.objects.filter(partner_record_id="stale", charged=False).exists()
    assert any("usage_record_late" in r.getMessage() and "stale" in r.getMessage() for r in caplog.records)
    # re-sent: a duplicate, as any record
    assert post(client, line, ("stale", 300 * MB, old_end)) == {"accepted": 0, "duplicates": 1}


def test_a_line_whose_package_start_is_unknown_is_charged_as_before(client, customer, package):
    line = make_line(owner=customer, package=package, data_remaining_bytes=GB, data_used_bytes=0)
    assert line.package_started_at is None  # lines from before migration 0010
    post(client, line, ("r", MB, timezone.now() - timedelta(days=3)))
    assert line.data_remaining_bytes == GB - MB


@pytest.mark.pure
def test_the_contract_documents_late_records():
    import yaml

    from partner.api import OPENAPI_PATH

    schemas = yaml.safe_load(OPENAPI_PATH.read_text())["components"]["schemas"]
    assert {"late", "late_records"} <= set(schemas["UsageResult"]["properties"])
    assert set(schemas["LateRecord"]["required"]) == {"index", "id"}
