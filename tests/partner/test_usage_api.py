"""POST /api/partner/usage: what the partner sees, and that nothing is lost or applied twice."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts import partitions
from accounts.models import UsageRecord
from tests.builders import GB, MB, make_line
from tests.partner.helpers import DAY, USAGE_DAY, USAGE_URL, record, signed_post


def counters(line):
    line.refresh_from_db()
    return line.data_remaining_bytes, line.data_used_bytes


def test_batch_lowers_remaining_and_raises_used(client, line):
    before_remaining, before_used = counters(line)
    response = signed_post(
        client, {"records": [record(line, id="r-1", bytes=100 * MB), record(line, id="r-2", bytes=50 * MB)]}
    )
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "duplicates": 0}
    assert counters(line) == (before_remaining - 150 * MB, before_used + 150 * MB)
    stored = UsageRecord.objects.get(partner_record_id="r-1")
    assert (stored.line, stored.bytes, stored.period_start.isoformat()) == (line, 100 * MB, f"{DAY}T10:00:00+00:00")


def test_offset_timestamps_are_stored_in_utc(client, line):
    body = {"records": [record(line, id="tz", bytes=1, start=f"{DAY}T18:00:00+08:00", end=f"{DAY}T18:30:00+08:00")]}
    assert signed_post(client, body).status_code == 200
    assert UsageRecord.objects.get().period_start.isoformat() == f"{DAY}T10:00:00+00:00"


def test_same_batch_sent_twice_is_applied_once(client, line):
    body = {"records": [record(line, id="r-1", bytes=100 * MB), record(line, id="r-2", bytes=MB)]}
    assert signed_post(client, body).json() == {"accepted": 2, "duplicates": 0}
    after_first = counters(line)
    response = signed_post(client, body)
    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 2}
    assert counters(line) == after_first
    assert UsageRecord.objects.count() == 2


def test_record_repeated_inside_one_batch_counts_once(client, line):
    before_remaining, _ = counters(line)
    response = signed_post(client, {"records": [record(line, id="r-1", bytes=MB), record(line, id="r-1", bytes=MB)]})
    assert response.json() == {"accepted": 1, "duplicates": 1}
    assert counters(line)[0] == before_remaining - MB


def test_old_record_in_a_new_batch_is_a_duplicate_and_the_new_one_applies(client, line):
    signed_post(client, {"records": [record(line, id="old", bytes=MB)]})
    before_remaining, _ = counters(line)
    response = signed_post(
        client, {"records": [record(line, id="old", bytes=MB), record(line, id="new", bytes=2 * MB)]}
    )
    assert response.json() == {"accepted": 1, "duplicates": 1}
    assert counters(line)[0] == before_remaining - 2 * MB


def test_records_of_several_lines_are_summed_per_line(client, customer, package):
    a, b = make_line(owner=customer, package=package), make_line(owner=customer, package=package)
    body = {
        "records": [record(a, id="a1", bytes=MB), record(b, id="b1", bytes=3 * MB), record(a, id="a2", bytes=2 * MB)]
    }
    assert signed_post(client, body).json() == {"accepted": 3, "duplicates": 0}
    assert counters(a) == (5 * GB - 3 * MB, 5 * GB + 3 * MB)
    assert counters(b) == (5 * GB - 3 * MB, 5 * GB + 3 * MB)


def test_unknown_iccid_is_rejected_alone(client, line):
    before_remaining, _ = counters(line)
    body = {
        "records": [
            record(line, id="good", bytes=MB),
            {
                "id": "stranger",
                "iccid": "8944000000000000001",
                "bytes": MB,
                "start": f"{DAY}T10:00:00Z",
                "end": f"{DAY}T10:05:00Z",
            },
        ]
    }
    response = signed_post(client, body)
    assert response.status_code == 207
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [{"index": 1, "id": "stranger", "error": "unknown iccid"}],
    }
    assert counters(line)[0] == before_remaining - MB
    assert list(UsageRecord.objects.values_list("partner_record_id", flat=True)) == ["good"]


@pytest.mark.parametrize(
    "change, error",
    [
        ({"bytes": -1}, "bytes must not be negative"),
        ({"bytes": 1.5}, "bytes must be an integer"),
        ({"bytes": "100"}, "bytes must be an integer"),
        ({"bytes": True}, "bytes must be an integer"),
        ({"bytes": None}, "bytes must be an integer"),
        ({"bytes": 10**16}, "bytes must be at most 1000000000000000"),
        ({"start": f"{DAY}T10:10:00Z"}, "end must not be before start"),
        ({"start": f"{DAY}T10:00:00"}, "start must include a UTC offset (e.g. Z or +08:00)"),
        ({"end": "yesterday"}, "end is not an ISO-8601 date-time"),
        ({"end": "2026-13-45T10:00:00Z"}, "end is not an ISO-8601 date-time"),
        ({"start": 1732442400}, "start must be an ISO-8601 string"),
        ({"start": "0001-01-01T00:00:00+05:00"}, "start must not be before 2000-01-01"),
        ({"start": "1999-12-31T23:59:59Z"}, "start must not be before 2000-01-01"),
        ({"end": "9999-12-31T23:59:59-05:00"}, "end must not be in the future"),
        ({"iccid": "8986 0000"}, "iccid must be a string of 18 to 20 digits"),
        ({"iccid": 89860000000000000001}, "iccid must be a string of 18 to 20 digits"),
        ({"id": ""}, "id must be a string of 1 to 128 printable characters"),
        ({"id": "x" * 129}, "id must be a string of 1 to 128 printable characters"),
        ({"id": "nul\u0000byte"}, "id must be a string of 1 to 128 printable characters"),
        ({"id": "\ud800"}, "id must be a string of 1 to 128 printable characters"),
        ({"id": 7}, "id must be a string of 1 to 128 printable characters"),
    ],
)
def test_malformed_record_is_rejected_and_the_good_ones_applied(client, line, change, error):
    before_remaining, before_used = counters(line)
    bad = {**record(line, id="bad", bytes=MB), **change}
    response = signed_post(client, {"records": [record(line, id="good", bytes=MB), bad]})
    assert response.status_code == 207
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (1, 0)
    assert [(r["index"], r["error"]) for r in body["rejected"]] == [(1, error)]
    assert counters(line) == (before_remaining - MB, before_used + MB)
    assert list(UsageRecord.objects.values_list("partner_record_id", flat=True)) == ["good"]


@pytest.mark.parametrize("bad", ["not an object", ["a", "list"], None, 42, {"id": "x"}])
def test_record_of_the_wrong_shape_is_rejected(client, line, bad):
    response = signed_post(client, {"records": [bad, record(line, id="good", bytes=MB)]})
    assert response.status_code == 207
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"][0]["index"] == 0


def test_every_rejection_is_logged(client, line, caplog):
    signed_post(client, {"records": [{**record(line, id="neg", bytes=MB), "bytes": -5}]})
    assert "usage_record_rejected index=0 id='neg' error=bytes must not be negative" in caplog.text


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"",
        b'["records"]',
        b'{"records": {"id": "r"}}',
        b'{"no_records": []}',
        b"\xff\xfe\x00garbage",
        b"[" * 100000,
    ],
)
def test_a_body_that_is_not_a_batch_is_400_and_changes_nothing(client, line, raw):
    before = counters(line)
    response = signed_post(client, raw)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()
    assert counters(line) == before
    assert not UsageRecord.objects.exists()


def test_more_than_1000_records_is_413_and_nothing_applied(client, line):
    before = counters(line)
    body = {"records": [record(line, id=f"r-{i}", bytes=1) for i in range(1001)]}
    response = signed_post(client, body)
    assert response.status_code == 413
    assert response.json()["max_records"] == 1000
    assert counters(line) == before
    assert not UsageRecord.objects.exists()


def test_exactly_1000_records_are_accepted(client, line):
    body = {"records": [record(line, id=f"r-{i}", bytes=1) for i in range(1000)]}
    assert signed_post(client, body).json() == {"accepted": 1000, "duplicates": 0}


def test_body_larger_than_the_upload_limit_is_413_json(client, line, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = signed_post(client, {"records": [record(line, id=f"r-{i}", bytes=1) for i in range(50)]})
    assert response.status_code == 413
    assert "error" in response.json()


@pytest.mark.parametrize(
    "how",
    ["missing", "wrong_secret", "stale", "future", "tampered", "garbage", "no_digest", "non_ascii_digest"],
)
def test_bad_signature_is_401_and_changes_nothing(client, line, how, settings):
    from partner import signature as partner_signature

    body = json.dumps({"records": [record(line, id="r-1", bytes=MB)]}).encode()
    now = timezone.now()
    secret = settings.PARTNER_USAGE_SECRET
    header = {
        "missing": "",
        "wrong_secret": partner_signature.sign(secret="not-the-secret", body=body, now=now),
        "stale": partner_signature.sign(secret=secret, body=body, now=now - timedelta(minutes=5, seconds=5)),
        "future": partner_signature.sign(secret=secret, body=body, now=now + timedelta(minutes=5, seconds=5)),
        "tampered": partner_signature.sign(secret=secret, body=body.replace(b"1048576", b"1"), now=now),
        "garbage": "t=abc,v1=xyz",
        "no_digest": f"t={int(now.timestamp())}",
        "non_ascii_digest": f"t={int(now.timestamp())},v1=\u00e9\u00e9",
    }[how]
    before = counters(line)
    if how == "missing":
        response = client.post(USAGE_URL, data=body, content_type="application/json")
    else:
        response = signed_post(client, body, header=header)
    assert response.status_code == 401
    assert "error" in response.json()
    assert counters(line) == before
    assert not UsageRecord.objects.exists()


def test_a_period_ending_now_is_accepted(client, line):
    end = timezone.now().isoformat()
    # A start inside the dedup window (docs/usage.md, "History"): a start older than it is refused.
    start = (timezone.now() - timedelta(days=1)).isoformat()
    assert signed_post(client, {"records": [record(line, id="now", bytes=1, start=start, end=end)]}).status_code == 200


def test_signature_within_the_window_is_accepted(client, line):
    body = {"records": [record(line, id="r-1", bytes=MB)]}
    assert signed_post(client, body, now=timezone.now() - timedelta(minutes=4, seconds=30)).status_code == 200


def test_rotated_secret_with_two_digests_is_accepted(client, line, settings):
    from partner import signature as partner_signature

    body = json.dumps({"records": [record(line, id="r-1", bytes=MB)]}).encode()
    t = int(timezone.now().timestamp())
    header = f"t={t},v1={partner_signature.compute(secret='old', timestamp=t, body=body)},v1={partner_signature.compute(secret=settings.PARTNER_USAGE_SECRET, timestamp=t, body=body)}"
    assert signed_post(client, body, header=header).status_code == 200


def test_get_is_405_json(client):
    response = client.get(USAGE_URL)
    assert response.status_code == 405
    assert "error" in response.json()


def test_csrf_is_not_required(line):
    csrf_client = Client(enforce_csrf_checks=True)
    assert signed_post(csrf_client, {"records": [record(line, id="r-1", bytes=1)]}).status_code == 200


# A usage batch, whatever its size (10 records or 1,000, over 100 lines), in one savepoint
# (SAVEPOINT, RELEASE: 2): the ICCIDs resolved and their lines locked FOR UPDATE with their rules'
# overage terms (1), one statement inserting every record (INSERT … SELECT FROM unnest), adding
# them to the hourly roll-up and summing them per line (1), one UPDATE … FROM unnest of every
# line (1); then renewals' trigger check: the widest expiry window and the lines at a trigger (2).
# No line here has a rule, so no renewal opens (opening one costs more: tests/renewals/test_cost.py).
USAGE_BATCH_QUERIES = 7


def test_batch_costs_the_same_few_queries_whatever_its_size(client, customer, package, django_assert_num_queries):
    lines = [make_line(owner=customer, package=package) for _ in range(100)]
    body = {"records": [record(lines[i % 100], id=f"r-{i}", bytes=MB) for i in range(1000)]}
    # A process looks a day's partition up once, on its first batch of that day (accounts/partitions.py).
    partitions.ensure_day_partitions([USAGE_DAY])
    with django_assert_num_queries(USAGE_BATCH_QUERIES) as captured:
        response = signed_post(client, body)
    assert response.json() == {"accepted": 1000, "duplicates": 0}
    assert {counters(line) for line in lines} == {(5 * GB - 10 * MB, 5 * GB + 10 * MB)}
    statements = [q["sql"] for q in captured.captured_queries]
    assert sum('INSERT INTO "accounts_usagerecord"' in sql for sql in statements) == 1
    assert sum('INSERT INTO "accounts_usagehour"' in sql for sql in statements) == 1
    assert sum('UPDATE "accounts_line"' in sql for sql in statements) == 1


def test_ten_records_and_a_thousand_cost_the_same_queries(client, customer, package):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from renewals.models import RetryPolicy

    RetryPolicy.current()  # created on first use: not part of a batch's cost
    partitions.ensure_day_partitions([USAGE_DAY])  # looked up once per process
    lines = [make_line(owner=customer, package=package) for _ in range(100)]
    counts = []
    for size, prefix in ((10, "small"), (1000, "big")):
        body = {"records": [record(lines[i % 100], id=f"{prefix}-{i}", bytes=MB) for i in range(size)]}
        with CaptureQueriesContext(connection) as captured:
            assert signed_post(client, body).status_code == 200
        counts.append(len(captured))
    assert counts == [USAGE_BATCH_QUERIES, USAGE_BATCH_QUERIES]


@pytest.mark.django_db(transaction=True)
def test_same_batch_from_two_threads_at_once_is_applied_once(customer, package):
    line = make_line(owner=customer, package=package)
    body = {"records": [record(line, id=f"r-{i}", bytes=MB) for i in range(200)]}
    barrier = threading.Barrier(2)
    results = []

    def send():
        try:
            barrier.wait()
            results.append(signed_post(Client(), body).json())
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["accepted"] for r in results) == [0, 200]
    assert sorted(r["duplicates"] for r in results) == [0, 200]
    assert counters(line) == (5 * GB - 200 * MB, 5 * GB + 200 * MB)
    assert UsageRecord.objects.count() == 200


@pytest.mark.django_db(transaction=True)
def test_overlapping_batches_from_two_threads_never_lose_usage(customer, package):
    """Two partners' retries overlap in records and lines: the total is the sum of the distinct records."""
    lines = [make_line(owner=customer, package=package) for _ in range(5)]
    first = {"records": [record(lines[i % 5], id=f"r-{i}", bytes=MB) for i in range(0, 150)]}
    second = {"records": [record(lines[i % 5], id=f"r-{i}", bytes=MB) for i in range(100, 250)]}
    barrier = threading.Barrier(2)
    results = []

    def send(body):
        try:
            barrier.wait()
            results.append(signed_post(Client(), body).json())
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(b,)) for b in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["accepted"] for r in results) == 250
    assert sum(r["duplicates"] for r in results) == 50
    assert {counters(line) for line in lines} == {(5 * GB - 50 * MB, 5 * GB + 50 * MB)}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
record_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=140) | json_values,
        "iccid": st.from_regex(r"\A[0-9]{17,21}\Z") | json_values,
        "bytes": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
        "start": st.datetimes().map(lambda d: d.isoformat()) | st.text(max_size=30) | json_values,
        "end": st.datetimes().map(lambda d: d.isoformat() + "Z") | st.text(max_size=30) | json_values,
    },
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({"records": st.lists(record_like | json_values, max_size=6)}) | json_values)
def test_no_signed_body_ever_gets_a_500(client, line, body):
    """Whatever the partner sends, signed, the answer is a documented status with a JSON body."""
    response = signed_post(client, body)  # the test client re-raises a server error
    assert response.status_code in {200, 207, 400, 413}
    assert isinstance(response.json(), dict)
