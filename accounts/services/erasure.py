"""The last step of closing an account (docs/data-rights.md): the person's fields erased, the user
row kept under a stable pseudonym so that the financial records linked to it stay whole, sign-in
made impossible, and one history row saying when and by whom the account was closed.
renewals.services.account_closure calls it once everything at the processor is done."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime
from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.hashers import make_password
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Q

from .. import history
from ..models import ChangeRecord, Line, Notice, User

logger = logging.getLogger(__name__)

CLOSED_DOMAIN = "closed.invalid"  # RFC 2606: never a deliverable address


class CustomerOnly(Exception):
    """An operator's account is not closed this way (staff lose their rights in the admin)."""


def pseudonym_for(user_id: int) -> str:
    """'closed-<hash>': the same for the same user every time (an operator can find the kept
    records of a closed account by it), and says nothing about the person."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"closed-user:{user_id}".encode(), hashlib.sha256)
    return f"closed-{digest.hexdigest()[:16]}"


def identifiers(user: User) -> list[str]:
    """What identifies the person anywhere in free text: their emails (all of allauth's) and phone.
    Unique, so a row that holds one is about them (a name is not: others share it)."""
    values = {user.email or "", user.phone or ""}
    values.update(EmailAddress.objects.filter(user=user).values_list("email", flat=True))
    return sorted((value for value in values if value), key=len, reverse=True)


def _scrub(value: Any, personal: list[str], pseudonym: str) -> Any:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    for item in personal:
        text = text.replace(item, pseudonym)
    return json.loads(text) if not isinstance(value, str) else text


def _scrub_history(*, user: User, personal: list[str], pseudonym: str) -> None:
    """History rows and the admin's log keep what happened, not who: rows about the user, and any
    row whose text holds one of their values (a 'verification email sent' with the address)."""
    user_type = ContentType.objects.get_for_model(User)
    mentions = Q(content_type=user_type, object_id=str(user.pk))
    for item in identifiers(user):
        mentions |= Q(object_repr__contains=item) | Q(reason__contains=item)
        mentions |= Q(before__icontains=item) | Q(after__icontains=item)
    for record in ChangeRecord.objects.filter(mentions):
        for field in ("object_repr", "reason", "before", "after"):
            setattr(record, field, _scrub(getattr(record, field), personal, pseudonym))
        if record.content_type_id == user_type.pk and record.object_id == str(user.pk):
            record.object_repr = pseudonym
        record.save(update_fields=["object_repr", "reason", "before", "after"])
    log_mentions = Q(content_type=user_type, object_id=str(user.pk))
    for item in identifiers(user):
        log_mentions |= Q(object_repr__contains=item) | Q(change_message__contains=item)
    for entry in LogEntry.objects.filter(log_mentions):
        entry.object_repr = _scrub(entry.object_repr, personal, pseudonym)[:200]
        entry.change_message = _scrub(entry.change_message, personal, pseudonym)
        if entry.content_type_id == user_type.pk and entry.object_id == str(user.pk):
            entry.object_repr = pseudonym
        entry.save(update_fields=["object_repr", "change_message"])


def _end_sessions(user: User, now: datetime) -> int:
    """Database sessions of the user, logged out. (The unusable password alone would already
    invalidate them at their next request: Django checks the session's password hash.)"""
    ended = []
    for session in Session.objects.filter(expire_date__gt=now).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            ended.append(session.pk)
    Session.objects.filter(pk__in=ended).delete()
    return len(ended)


def erase_person(*, user_id: int, actor: User | None, closed_by: str, reason: str, now: datetime) -> User:
    """Erase the person from the user row and everything that names them; keep the row (charges,
    renewals, lines and refunds point at it) under its pseudonym, inactive, with no password.
    `closed_by` is "customer" or "operator": the history row keeps that, not a name."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        if user.is_staff or user.is_superuser:
            raise CustomerOnly(user_id)
        pseudonym = pseudonym_for(user.pk)
        # Replaced wherever a row about them holds it; a name only if it cannot be a common word.
        personal = identifiers(user) + ([user.name] if len(user.name) >= 3 else [])
        EmailAddress.objects.filter(user=user).delete()  # cascades to allauth's confirmations
        Authenticator.objects.filter(user=user).delete()
        Notice.objects.filter(user=user).delete()
        Line.objects.filter(owner=user).exclude(label="").update(label="")
        sessions = _end_sessions(user, now)
        _scrub_history(user=user, personal=personal, pseudonym=pseudonym)
        # An update, not save(): no signal may snapshot the old values into a new history row.
        User.objects.filter(pk=user.pk).update(
            email=f"{pseudonym}@{CLOSED_DOMAIN}",
            phone=None,
            phone_verified=False,
            name="",
            language="",
            time_zone="UTC",
            password=make_password(None),
            is_active=False,
        )
        user.groups.clear()
        user.user_permissions.clear()
        user.refresh_from_db()
        history.record_change(
            obj=user,
            action="account_closed",
            actor=actor,
            reason=reason,
            after={"closed_by": closed_by},
            now=now,
        )
    logger.info("account_erased user=%s closed_by=%s sessions_ended=%s", user.pk, closed_by, sessions)
    return user


def is_closed(user: User) -> bool:
    return bool(user.email and user.email.endswith(f"@{CLOSED_DOMAIN}")) and not user.is_active
