"""Schemathesis over the served partner OpenAPI description, in-process against the Django WSGI app
on the test database: no 5xx, only documented answers that match the schema, and nothing applied
from a rejected request (nor from the rejected records of a 207)."""

import json
import os
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis.core import NotSet
from schemathesis.generation.modes import GenerationMode

from accounts.models import Line, NetworkCommand, UsageRecord
from partner import signature as partner_signature
from tests.builders import MB, make_line
from tests.partner.helpers import DAY

APP = get_wsgi_application()
SCHEMA = schemathesis.openapi.from_wsgi("/api/partner/openapi.yaml", APP)
USAGE = SCHEMA["/api/partner/usage"]["POST"]
# One ICCID of each accepted length, so that generated records land on real lines.
REAL_ICCIDS = ("898600000000000001", "8986000000000000002", "89860000000000000003")
SEEN_ID = "already-received-1"
FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 200)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
CHECKS_SIGNED = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


def _checks(names):
    from schemathesis import checks

    return [getattr(checks, name) for name in names]


@pytest.fixture
def lines(db):
    """Real lines behind the ICCIDs the fuzzer aims at, one already holding a received record."""
    made = [
        make_line(owner=None, iccid=iccid, data_remaining_bytes=(i + 1) * 300 * MB, data_used_bytes=0)
        for i, iccid in enumerate(REAL_ICCIDS)
    ]
    now = timezone.now()
    UsageRecord.objects.create(partner_record_id=SEEN_ID, line=made[0], bytes=1, period_start=now, period_end=now)
    return made


@pytest.fixture
def in_process(lines):
    """Requests reach Django in this thread, inside the test's transaction; as Django's test client
    does, the per-request connection recycling is off, or it would close the test's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _snapshot() -> dict:
    return {
        # Keyed by the dedup key, id and start (docs/usage.md, "History"): an id received before with
        # another start is another record.
        "records": {
            r[:2]: r[2:]
            for r in UsageRecord.objects.values_list("partner_record_id", "period_start", "line__iccid", "bytes")
        },
        "lines": {
            row["iccid"]: row
            for row in Line.objects.values(
                "iccid", "status", "data_remaining_bytes", "data_used_bytes", "overage_bytes", "usage_notice_level"
            )
        },
        "commands": NetworkCommand.objects.count(),
    }


@st.composite
def _realistic_record(draw, record: dict) -> dict:
    """Keep the generated record, but sometimes give it a real line, a sensible period, a small
    size or an id received before, so that batches reach the ingestion code, not only validation."""
    record = dict(record)
    now = timezone.now()
    if draw(st.integers(0, 3)):
        record["iccid"] = draw(st.sampled_from(REAL_ICCIDS))
    if draw(st.booleans()):
        minutes = draw(st.integers(10, 60 * 24 * 30))
        record["start"] = (now - timedelta(minutes=minutes)).isoformat()
        record["end"] = (now - timedelta(minutes=draw(st.integers(0, minutes)))).isoformat()
    if draw(st.booleans()):
        record["bytes"] = draw(st.integers(0, 400 * MB))
    if draw(st.integers(0, 9)) == 0:
        record["id"] = SEEN_ID
    return record


def _body_bytes(data, case) -> bytes:
    body = case.body
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, dict) and isinstance(body.get("records"), list):
        records = [data.draw(_realistic_record(r)) if isinstance(r, dict) else r for r in body["records"]]
        if records and data.draw(st.integers(0, 4)) == 0:
            records.append(data.draw(st.sampled_from(records)))  # the same record re-sent in one batch
        body = case.body = {**body, "records": records}
    if isinstance(body, bytes):
        return body
    # Non-ASCII as UTF-8 and lone surrogates as invalid UTF-8: both reach the server as bytes.
    return json.dumps(body, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass")


def _assert_only_accepted_records_applied(before: dict, after: dict, sent: list, answer: dict) -> None:
    rejected = {entry["index"] for entry in answer.get("rejected", [])}
    assert answer["accepted"] + answer["duplicates"] + len(rejected) == len(sent)
    kept = [record for index, record in enumerate(sent) if index not in rejected]
    # "Every record not listed in rejected was applied (or was a duplicate)": its id is stored.
    stored_ids = {rid for rid, _start in after["records"]}
    for record in kept:
        assert record["id"] in stored_ids, record
    new = {key: value for key, value in after["records"].items() if key not in before["records"]}
    assert {key: before["records"][key] for key in before["records"]} == {
        key: after["records"][key] for key in before["records"]
    }
    assert len(new) == answer["accepted"]
    for (rid, _start), (iccid, used) in new.items():
        assert any(r["id"] == rid and r["iccid"] == iccid and r["bytes"] == used for r in kept), rid
    for iccid, row in before["lines"].items():
        added = sum(used for line_iccid, used in new.values() if line_iccid == iccid)
        if added:
            assert after["lines"][iccid]["data_used_bytes"] == row["data_used_bytes"] + added
        else:
            assert after["lines"][iccid] == row


# The header is fixed here (and replaced by a real signature) so that negative generation
# mutates the body, the part of the request that reaches the validation code.
_SIGNED = {"headers": {"X-Signature": "signed in the test"}}


@FUZZ_SETTINGS
@given(
    case=st.one_of(
        USAGE.as_strategy(GenerationMode.POSITIVE, **_SIGNED), USAGE.as_strategy(GenerationMode.NEGATIVE, **_SIGNED)
    ),
    data=st.data(),
)
def test_signed_batches_get_documented_answers_and_apply_only_accepted_records(in_process, case, data):
    raw = _body_bytes(data, case)
    header = partner_signature.sign(secret="test-partner-secret", body=raw, now=timezone.now())
    before = _snapshot()

    response = case.call(app=APP, data=raw, headers={"X-Signature": header})

    event(f"status {response.status_code}")
    assert response.status_code in (200, 207, 400, 413), response.content[:500]
    assert response.headers["content-type"][0] == "application/json"
    case.validate_response(response, checks=_checks(CHECKS_SIGNED))
    after = _snapshot()
    if response.status_code >= 400:
        assert after == before
    else:
        _assert_only_accepted_records_applied(before, after, case.body["records"], json.loads(response.content))


@FUZZ_SETTINGS
@given(
    case=st.one_of(USAGE.as_strategy(GenerationMode.POSITIVE), USAGE.as_strategy(GenerationMode.NEGATIVE)),
    data=st.data(),
)
def test_unsigned_or_badly_signed_batches_get_401_and_change_nothing(in_process, case, data):
    raw = _body_bytes(data, case)
    forged = data.draw(
        st.sampled_from(["generated", "missing", "other secret", "stale", "body changed"]), label="signature"
    )
    headers = {}
    if forged == "missing":
        (case.headers or {}).pop("X-Signature", None)
    elif forged == "other secret":
        headers["X-Signature"] = partner_signature.sign(secret="not-the-secret", body=raw, now=timezone.now())
    elif forged == "stale":
        headers["X-Signature"] = partner_signature.sign(
            secret="test-partner-secret", body=raw, now=timezone.now() - timedelta(minutes=6)
        )
    elif forged == "body changed":
        headers["X-Signature"] = partner_signature.sign(
            secret="test-partner-secret", body=raw + b" ", now=timezone.now()
        )
    before = _snapshot()

    response = case.call(app=APP, data=raw, headers=headers)

    assert response.status_code == 401, response.content[:500]
    case.validate_response(response, checks=_checks(CHECKS_SIGNED))
    assert _snapshot() == before


@pytest.fixture(autouse=True)
def _known_secret(settings):
    settings.PARTNER_USAGE_SECRET = "test-partner-secret"


def test_a_record_sharing_its_id_with_a_rejected_record_is_still_applied(lines, client):
    """Found by the fuzzer: the second record was counted as a duplicate of a record that had been
    rejected (unknown ICCID), so its usage was silently lost."""
    from tests.partner.helpers import signed_post

    period = {"start": f"{DAY}T10:00:00Z", "end": f"{DAY}T10:05:00Z"}
    before = Line.objects.get(iccid=REAL_ICCIDS[1]).data_used_bytes
    response = signed_post(
        client,
        {
            "records": [
                {"id": "r-1", "iccid": "898600000000009999", "bytes": 5, **period},
                {"id": "r-1", "iccid": REAL_ICCIDS[1], "bytes": 7, **period},
            ]
        },
    )
    assert response.status_code == 207
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [{"index": 0, "id": "r-1", "error": "unknown iccid"}],
    }
    assert Line.objects.get(iccid=REAL_ICCIDS[1]).data_used_bytes == before + 7
