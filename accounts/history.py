"""The change history (ChangeRecord): who changed what, when, why, before and after.

Tracked models (rules, line states, packages, the retry policy) are recorded from their
post_save / post_delete signals, so a change made by a service, a customer's page or the admin
is written the same way; the values before are remembered when the row is loaded, which costs
no extra query. `acting(...)` names the operator, the action and the reason for the saves inside
it; outside it the actor is the system. Bulk `update()` bypasses signals: services that change a
tracked field that way call `record_change` themselves.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models.signals import post_delete, post_init, post_save

from .models import ChangeRecord

# model label -> fields whose changes are history; None means every concrete field but timestamps.
TRACKED: dict[str, tuple[str, ...] | None] = {
    "accounts.Line": ("status", "owner", "package"),
    "accounts.Package": None,
    "renewals.RenewalRule": None,
    "renewals.RetryPolicy": None,
    "accounts.UsageRetention": None,
}
UNTRACKED_FIELDS = {"id", "created_at", "updated_at"}
# The retry policy's one row is created with defaults on first use (RetryPolicy.current()), often
# inside a partner's usage batch: not a change anyone made, and not worth a query there.
CREATION_NOT_HISTORY = {"renewals.RetryPolicy", "accounts.UsageRetention"}
SNAPSHOT_ATTR = "_history_snapshot"


@dataclass(frozen=True)
class Acting:
    actor: Any = None
    action: str = ""
    reason: str = ""


_acting: contextvars.ContextVar[Acting] = contextvars.ContextVar("history_acting", default=Acting())  # noqa: B039 (frozen)


@contextmanager
def acting(actor=None, *, action: str = "", reason: str = "") -> Iterator[None]:
    """Attribute the tracked saves inside this block to `actor`, with an action name and reason."""
    token = _acting.set(Acting(actor=actor if getattr(actor, "pk", None) else None, action=action, reason=reason))
    try:
        yield
    finally:
        _acting.reset(token)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def tracked_fields(model) -> list:
    names = TRACKED.get(model._meta.label)
    fields = [f for f in model._meta.concrete_fields if f.name not in UNTRACKED_FIELDS]
    if names is not None:
        fields = [f for f in fields if f.name in names]
    return fields


def snapshot(instance) -> dict[str, Any]:
    """Tracked values as loaded; deferred fields are left out rather than fetched."""
    values = {}
    for field in tracked_fields(type(instance)):
        if field.attname in instance.__dict__:
            values[field.name] = _jsonable(instance.__dict__[field.attname])
    return values


def record_change(
    *,
    obj,
    action: str,
    actor=None,
    reason: str = "",
    before: dict | None = None,
    after: dict | None = None,
    now: datetime | None = None,
) -> ChangeRecord:
    """Write one history row for `obj`. Callers outside the tracked models' signals (admin actions
    on renewals and charges, imports) use this directly."""
    context = _acting.get()
    fields = {
        "content_type": ContentType.objects.get_for_model(type(obj)),
        "object_id": str(obj.pk),
        "object_repr": str(obj)[:200],
        "action": action,
        "actor": actor if getattr(actor, "pk", None) else context.actor,
        "reason": (reason or context.reason)[:500],
        "before": _jsonable(before or {}),
        "after": _jsonable(after or {}),
    }
    if now is not None:
        fields["created_at"] = now
    return ChangeRecord.objects.create(**fields)


def record_changes(
    entries: list[tuple[Any, dict, dict]], *, action: str, reason: str = "", now: datetime | None = None
) -> None:
    """History for rows a service changed with one bulk statement (no signals fire): one INSERT
    for all of them. `entries` holds (obj, before, after)."""
    if not entries:
        return
    context = _acting.get()
    content_type = ContentType.objects.get_for_model(type(entries[0][0]))
    extra = {"created_at": now} if now is not None else {}
    ChangeRecord.objects.bulk_create(
        [
            ChangeRecord(
                content_type=content_type,
                object_id=str(obj.pk),
                object_repr=str(obj)[:200],
                action=action,
                actor=context.actor,
                reason=(reason or context.reason)[:500],
                before=_jsonable(before),
                after=_jsonable(after),
                **extra,
            )
            for obj, before, after in entries
        ]
    )


def history_for(obj):
    return (
        ChangeRecord.objects.filter(content_type=ContentType.objects.get_for_model(type(obj)), object_id=str(obj.pk))
        .select_related("actor")
        .order_by("-created_at", "-id")
    )


def _remember(sender, instance, **kwargs) -> None:
    setattr(instance, SNAPSHOT_ATTR, snapshot(instance) if instance.pk is not None else {})


def _saved(sender, instance, created, raw=False, **kwargs) -> None:
    if raw:  # loaddata: not a change anyone made
        return
    before = getattr(instance, SNAPSHOT_ATTR, {})
    after = snapshot(instance)
    if created:
        if sender._meta.label in CREATION_NOT_HISTORY and _acting.get().actor is None:
            setattr(instance, SNAPSHOT_ATTR, after)
            return
        changed_before, changed_after = {}, after
    else:
        keys = [key for key in after if key in before and before[key] != after[key]]
        if not keys:
            setattr(instance, SNAPSHOT_ATTR, after)
            return
        changed_before = {key: before[key] for key in keys}
        changed_after = {key: after[key] for key in keys}
    context = _acting.get()
    record_change(
        obj=instance,
        action=context.action or ("created" if created else "changed"),
        before=changed_before,
        after=changed_after,
    )
    setattr(instance, SNAPSHOT_ATTR, after)


def _deleted(sender, instance, **kwargs) -> None:
    record_change(obj=instance, action="deleted", before=snapshot(instance))


def connect() -> None:
    for label in TRACKED:
        model = apps.get_model(label)
        post_init.connect(_remember, sender=model, dispatch_uid=f"history-init-{label}")
        post_save.connect(_saved, sender=model, dispatch_uid=f"history-save-{label}")
        post_delete.connect(_deleted, sender=model, dispatch_uid=f"history-delete-{label}")
