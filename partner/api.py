"""The partner API (machine to machine): usage batches in, and its OpenAPI description.

Answers are always JSON, whatever the input (partner/openapi/partner.yaml is the contract):
401 bad signature, 400 not a batch, 413 too many records, 200 all applied, 207 applied except the
records listed in "rejected". Records stored but too late to charge are listed in "late"
(docs/usage.md). Every rejection is logged with what the partner sent us to identify it.
"""

import json
import logging
import re
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from . import signature as partner_signature
from .services.usage import UsageBatch, UsageInput, ingest_usage

logger = logging.getLogger(__name__)

MAX_RECORDS = 1000
MAX_RECORD_ID_LENGTH = 128
# A record of more than a petabyte is a partner bug, and capping it keeps the sums inside bigint.
MAX_RECORD_BYTES = 10**15
ICCID_RE = re.compile(r"[0-9]{18,20}")
# Usage is reported after the fact: a period ending in the future, or before the service existed,
# is a partner clock bug, and refusing it keeps date arithmetic away from the year-1/9999 edges.
EARLIEST_USAGE = datetime(2000, 1, 1, tzinfo=UTC)
OPENAPI_PATH = Path(__file__).resolve().parent / "openapi" / "partner.yaml"


def _error(status: int, message: str, **fields) -> JsonResponse:
    return JsonResponse({"error": message, **fields}, status=status)


class RecordError(ValueError):
    pass


# A partner reports fixed periods: a batch repeats the same few start/end strings a thousand times.
# Only timestamp-sized strings are remembered, so junk input cannot fill the cache with big strings.
_parse_short_datetime = lru_cache(maxsize=1024)(parse_datetime)


def _parse_datetime(value: str):
    return _parse_short_datetime(value) if len(value) <= 40 else parse_datetime(value)


def _aware_timestamp(value: str) -> datetime | None:
    """The fast path's parse: the aware datetime, or None for anything parse_record must explain."""
    try:
        parsed = _parse_datetime(value)
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _timestamp(record: dict, key: str):
    value = record.get(key)
    if not isinstance(value, str):
        raise RecordError(f"{key} must be an ISO-8601 string")
    try:
        parsed = _parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise RecordError(f"{key} is not an ISO-8601 date-time")
    if timezone.is_naive(parsed):
        raise RecordError(f"{key} must include a UTC offset (e.g. Z or +08:00)")
    return parsed


def parse_record(index: int, record, *, now: datetime) -> UsageInput:
    """A record's shape and values, or RecordError saying what is wrong (for the partner to fix)."""
    if not isinstance(record, dict):
        raise RecordError("record must be an object")
    missing = [key for key in ("id", "iccid", "bytes", "start", "end") if key not in record]
    if missing:
        raise RecordError(f"missing field(s): {', '.join(missing)}")
    record_id = record["id"]
    # Printable only: no NUL (PostgreSQL text refuses it) and no lone surrogates (not encodable).
    if not isinstance(record_id, str) or not 1 <= len(record_id) <= MAX_RECORD_ID_LENGTH or not record_id.isprintable():
        raise RecordError(f"id must be a string of 1 to {MAX_RECORD_ID_LENGTH} printable characters")
    iccid = record["iccid"]
    if not isinstance(iccid, str) or not ICCID_RE.fullmatch(iccid):
        raise RecordError("iccid must be a string of 18 to 20 digits")
    used = record["bytes"]
    if isinstance(used, bool) or not isinstance(used, int):
        raise RecordError("bytes must be an integer")
    if used < 0:
        raise RecordError("bytes must not be negative")
    if used > MAX_RECORD_BYTES:
        raise RecordError(f"bytes must be at most {MAX_RECORD_BYTES}")
    start, end = _timestamp(record, "start"), _timestamp(record, "end")
    if end < start:
        raise RecordError("end must not be before start")
    if start < EARLIEST_USAGE:
        raise RecordError("start must not be before 2000-01-01")
    if end > now + settings.PARTNER_SIGNATURE_TOLERANCE:
        raise RecordError("end must not be in the future")
    return UsageInput(index=index, partner_record_id=record_id, iccid=iccid, bytes=used, start=start, end=end)


def parse_batch(raw_records: list, *, now: datetime) -> tuple[UsageBatch, list[dict]]:
    """The batch's valid records as columns, and the rejections ({"index", "id", "error"}).

    The fast path takes a well-formed record straight into the columns with a handful of type and
    range tests and a cached timestamp parse, no object per record; anything it does not accept
    goes through parse_record, which says exactly what is wrong (the same checks, the same order,
    the messages partner/openapi/partner.yaml documents)."""
    batch = UsageBatch()
    rejected: list[dict] = []
    indexes, ids, iccids, sizes, starts, ends = (
        batch.indexes,
        batch.ids,
        batch.iccids,
        batch.bytes,
        batch.starts,
        batch.ends,
    )
    latest = now + settings.PARTNER_SIGNATURE_TOLERANCE
    iccid_ok = ICCID_RE.fullmatch
    for index, raw in enumerate(raw_records):
        if type(raw) is dict:
            record_id, iccid, used = raw.get("id"), raw.get("iccid"), raw.get("bytes")
            start_text, end_text = raw.get("start"), raw.get("end")
            if (
                type(record_id) is str
                and 0 < len(record_id) <= MAX_RECORD_ID_LENGTH
                and record_id.isprintable()
                and type(iccid) is str
                and iccid_ok(iccid)
                and type(used) is int
                and 0 <= used <= MAX_RECORD_BYTES
                and type(start_text) is str
                and type(end_text) is str
            ):
                start, end = _aware_timestamp(start_text), _aware_timestamp(end_text)
                if start is not None and end is not None and EARLIEST_USAGE <= start <= end <= latest:
                    indexes.append(index)
                    ids.append(record_id)
                    iccids.append(iccid)
                    sizes.append(used)
                    starts.append(start)
                    ends.append(end)
                    continue
        try:
            record = parse_record(index, raw, now=now)
        except RecordError as exc:
            rejected.append({"index": index, "id": _record_id_for_log(raw), "error": str(exc)})
        else:  # pragma: no cover - the fast path takes every record parse_record accepts
            indexes.append(index)
            ids.append(record.partner_record_id)
            iccids.append(record.iccid)
            sizes.append(record.bytes)
            starts.append(record.start)
            ends.append(record.end)
    return batch, rejected


def _loads(body: bytes):
    """orjson, the fast parser; the standard library's for what orjson refuses but JSON parsers
    commonly accept (NaN, integers past 64 bits), so such a batch keeps its per-record answer."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _record_id_for_log(record) -> str | None:
    if isinstance(record, dict) and isinstance(record.get("id"), str):
        return record["id"][:MAX_RECORD_ID_LENGTH]
    return None


@csrf_exempt
def usage_batch(request):
    """POST /api/partner/usage: see partner/openapi/partner.yaml."""
    if request.method != "POST":
        return _error(405, "use POST")
    try:
        body = request.body
    except RequestDataTooBig:
        logger.warning("usage_batch_rejected status=413 reason=body_too_large")
        return _error(413, f"request body too large; send at most {MAX_RECORDS} records per request")
    try:
        signed_with = partner_signature.verify(
            header=request.headers.get(partner_signature.HEADER),
            secret=settings.PARTNER_USAGE_SECRET,
            previous_secret=settings.PARTNER_USAGE_SECRET_PREVIOUS,
            body=body,
            now=timezone.now(),
            tolerance=settings.PARTNER_SIGNATURE_TOLERANCE,
        )
    except partner_signature.SignatureError as exc:
        logger.warning("usage_batch_rejected status=401 reason=%s remote=%s", exc, request.META.get("REMOTE_ADDR"))
        return _error(401, str(exc))
    if signed_with == "previous":
        # The partner still signs with the secret being rotated out: drop it only once these stop.
        logger.info("usage_batch_signed_with_previous_secret remote=%s", request.META.get("REMOTE_ADDR"))
    try:
        payload = _loads(body)
    except (ValueError, RecursionError):  # ValueError covers bad UTF-8 and bad JSON
        logger.warning("usage_batch_rejected status=400 reason=not_json bytes=%s", len(body))
        return _error(400, "body is not JSON")
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        logger.warning("usage_batch_rejected status=400 reason=no_records_list")
        return _error(400, 'body must be an object with a "records" array')
    raw_records = payload["records"]
    if len(raw_records) > MAX_RECORDS:
        logger.warning("usage_batch_rejected status=413 reason=too_many_records count=%s", len(raw_records))
        return _error(413, f"at most {MAX_RECORDS} records per request", max_records=MAX_RECORDS)

    now = timezone.now()
    valid, rejected = parse_batch(raw_records, now=now)
    result = ingest_usage(records=valid, now=now)
    rejected = sorted(rejected + result.rejected, key=lambda r: r["index"])
    for entry in rejected:
        logger.warning("usage_record_rejected index=%s id=%r error=%s", entry["index"], entry["id"], entry["error"])
    body = {"accepted": result.accepted, "duplicates": result.duplicates}
    if result.late:
        # Stored (a re-send is a duplicate) but charged to no package: docs/usage.md.
        body.update(late=len(result.late), late_records=result.late)
    if rejected:
        return JsonResponse({**body, "rejected": rejected}, status=207)
    return JsonResponse(body, status=200)


@require_GET
def openapi_description(request):
    """The checked-in OpenAPI description, served as is so that it cannot drift from the file."""
    return HttpResponse(OPENAPI_PATH.read_bytes(), content_type="application/yaml; charset=utf-8")
