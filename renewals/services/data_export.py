"""The customer's data as one JSON document (docs/data-rights.md), for their own download and for
an operator answering a subject access request. Written as a stream of chunks: a line's raw usage
records can run to hundreds of thousands, so they are read with a server-side cursor and never
held in memory. Only the rows of the one user asked for are read: every query filters on them.

Money is integer minor units with its currency; times are UTC, ISO 8601."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import ChangeRecord, Line, Notice, UsageHour, UsageRecord, User
from payments.models import Charge
from payments.selectors import payment_methods_for_user

from ..models import Renewal, RenewalRule

FORMAT = "esimsite-data-export/1"
USAGE_CHUNK = 2000


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _profile(user: User) -> dict[str, Any]:
    from allauth.account.models import EmailAddress

    return {
        "id": user.pk,
        "email": user.email,
        "phone": user.phone,
        "phone_verified": user.phone_verified,
        "name": user.name,
        "language": user.language,
        "time_zone": user.time_zone,
        "date_joined": _time(user.date_joined),
        "last_login": _time(user.last_login),
        "email_addresses": [
            {"email": a.email, "verified": a.verified, "primary": a.primary}
            for a in EmailAddress.objects.filter(user=user).order_by("pk")
        ],
    }


def _status_history(line_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    line_type = ContentType.objects.get_for_model(Line)
    history: dict[int, list[dict[str, Any]]] = {pk: [] for pk in line_ids}
    records = ChangeRecord.objects.filter(content_type=line_type, object_id__in=[str(pk) for pk in line_ids])
    for record in records.order_by("created_at", "id"):
        if "status" in record.after:
            history[int(record.object_id)].append(
                {
                    "at": _time(record.created_at),
                    "from": record.before.get("status"),
                    "to": record.after.get("status"),
                    "action": record.action,
                }
            )
    return history


def _line(line: Line, history: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": line.pk,
        "iccid": line.iccid,
        "label": line.label,
        "status": line.status,
        "package": {"id": line.package_id, "name": line.package.name} if line.package else None,
        "data_remaining_bytes": line.data_remaining_bytes,
        "data_used_bytes": line.data_used_bytes,
        "expires_at": _time(line.expires_at),
        "activated_at": _time(line.activated_at),
        "created_at": _time(line.created_at),
        "status_history": history,
    }


def _daily_usage(line_ids: list[int]) -> Iterator[dict[str, Any]]:
    """Per line and UTC day, from the hourly roll-up (docs/usage.md, "Daily roll-ups")."""
    rows = (
        UsageHour.objects.filter(line_id__in=line_ids)
        .annotate(day=TruncDate("hour", tzinfo=UTC))
        .values("line_id", "day")
        .annotate(total=Sum("bytes"), count=Sum("records"))
        .order_by("line_id", "day")
    )
    for row in rows.iterator(chunk_size=USAGE_CHUNK):
        yield {
            "line_id": row["line_id"],
            "day": row["day"].isoformat(),
            "bytes": row["total"],
            "records": row["count"],
        }


def _usage_records(line_ids: list[int]) -> Iterator[dict[str, Any]]:
    rows = (
        UsageRecord.objects.filter(line_id__in=line_ids)
        .order_by("line_id", "period_start", "id")
        .values_list("line_id", "partner_record_id", "bytes", "period_start", "period_end", "received_at")
    )
    for line_id, record_id, size, start, end, received in rows.iterator(chunk_size=USAGE_CHUNK):
        yield {
            "line_id": line_id,
            "record_id": record_id,
            "bytes": size,
            "period_start": _time(start),
            "period_end": _time(end),
            "received_at": _time(received),
        }


def _rule(rule: RenewalRule) -> dict[str, Any]:
    return {
        "line_id": rule.line_id,
        "enabled": rule.enabled,
        "package": {"id": rule.package_id, "name": rule.package.name},
        "trigger_data_below_mb": rule.trigger_data_below_mb,
        "trigger_hours_before_expiry": rule.trigger_hours_before_expiry,
        "payment_method_id": rule.payment_method_id,
        "overage_policy": rule.overage_policy,
        "overage_cap_mb": rule.overage_cap_mb,
        "max_renewals_per_day": rule.max_renewals_per_day,
        "monthly_spend_cap_minor": rule.monthly_spend_cap_minor,
        "updated_at": _time(rule.updated_at),
    }


def _renewal(renewal: Renewal) -> dict[str, Any]:
    return {
        "id": renewal.pk,
        "line_id": renewal.line_id,
        "package": {"id": renewal.package_id, "name": renewal.package.name},
        "amount_minor": renewal.amount_minor,
        "currency": renewal.currency,
        "status": renewal.status,
        "trigger": renewal.trigger,
        "attempts": renewal.attempts,
        "created_at": _time(renewal.created_at),
        "completed_at": _time(renewal.completed_at),
    }


def _charge(charge: Charge) -> dict[str, Any]:
    return {
        "id": charge.pk,
        "purpose": charge.purpose,
        "line_id": charge.line_id,
        "renewal_id": charge.renewal_id,
        "package": {"id": charge.package_id, "name": charge.package.name} if charge.package else None,
        "amount_minor": charge.amount_minor,
        "currency": charge.currency,
        "status": charge.status,
        "refunded_minor": charge.refunded_minor,
        "payment_method": charge.payment_method_summary,
        "failure_code": charge.failure_code,
        "failure_message": charge.failure_message,
        "created_at": _time(charge.created_at),
        "settled_at": _time(charge.settled_at),
    }


def _notice(notice: Notice) -> dict[str, Any]:
    return {
        "kind": notice.kind,
        "line_id": notice.line_id,
        "status": notice.status,
        "language": notice.language,
        "created_at": _time(notice.created_at),
        "sent_at": _time(notice.sent_at),
        "facts": notice.facts,
    }


def _array(items: Iterable[dict[str, Any]]) -> Iterator[str]:
    yield "["
    first = True
    for item in items:
        yield ("" if first else ",\n") + _dump(item)
        first = False
    yield "]"


def export_user_data(user: User, *, now: datetime | None = None) -> Iterator[str]:
    """The document, chunk by chunk. Every read is filtered on `user` (lines they own, charges
    they paid, rules and renewals of their lines, their notices)."""
    now = now or timezone.now()
    lines = list(Line.objects.filter(owner=user).select_related("package").order_by("created_at", "id"))
    line_ids = [line.pk for line in lines]
    history = _status_history(line_ids)
    yield "{" + f'"format": {_dump(FORMAT)},\n"generated_at": {_dump(_time(now))},\n'
    yield f'"profile": {_dump(_profile(user))},\n"lines": '
    yield from _array(_line(line, history[line.pk]) for line in lines)
    yield ',\n"usage_daily": '
    yield from _array(_daily_usage(line_ids))
    yield ',\n"usage_records": '
    yield from _array(_usage_records(line_ids))
    yield ',\n"renewal_rules": '
    rules = RenewalRule.objects.filter(line_id__in=line_ids).select_related("package").order_by("line_id")
    yield from _array(_rule(rule) for rule in rules)
    yield ',\n"renewals": '
    renewals = Renewal.objects.filter(line_id__in=line_ids).select_related("package").order_by("created_at", "id")
    yield from _array(_renewal(renewal) for renewal in renewals.iterator(chunk_size=USAGE_CHUNK))
    yield ',\n"charges": '
    charges = Charge.objects.filter(user=user).select_related("package").order_by("created_at", "id")
    yield from _array(_charge(charge) for charge in charges.iterator(chunk_size=USAGE_CHUNK))
    yield ',\n"payment_methods": '
    yield from _array(
        {"brand": m.brand or m.type, "last4": m.last4, "exp_month": m.exp_month, "exp_year": m.exp_year}
        for m in payment_methods_for_user(user)
    )
    yield ',\n"notices": '
    notices = Notice.objects.filter(user=user).order_by("created_at", "id")
    yield from _array(_notice(notice) for notice in notices.iterator(chunk_size=USAGE_CHUNK))
    yield "}\n"


def export_filename(user: User, now: datetime) -> str:
    return f"esimsite-data-{user.pk}-{now.astimezone(UTC):%Y%m%d}.json"
