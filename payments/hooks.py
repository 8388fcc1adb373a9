"""What payments asks of the apps above it about saved payment methods, filled in by those apps in
their AppConfig.ready (renewals: its rules charge a method; its retry policy names the hard decline
codes). Payments imports none of them: with no app registered, no rule uses a method, a new
default wakes nothing and every decline is soft. The outcome and alert hooks are in outcomes.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypedDict

from django.db.models import Model

if TYPE_CHECKING:
    from accounts.models import User

# method_users(*, user, payment_method_id: str, is_default: bool) -> list: what charges this method
# on its own (enabled auto-renewal rules, naming it or going through the default).
# move_users(*, user, from_id: str, to_id: str) -> int: point them at another method.
# default_changed(*, user, now, payment_method_id: str): a new default may wake waiting work.


class FindMethodUsers(Protocol):
    def __call__(self, *, user: User, payment_method_id: str, is_default: bool) -> Sequence[Model]: ...


class MoveMethodUsers(Protocol):
    def __call__(self, *, user: User, from_id: str, to_id: str) -> int: ...


class DefaultMethodChanged(Protocol):
    def __call__(self, *, user: User, now: datetime, payment_method_id: str) -> object: ...


class _MethodUsers(TypedDict, total=False):
    find: FindMethodUsers
    move: MoveMethodUsers
    default_changed: DefaultMethodChanged


_method_users: _MethodUsers = {}
# hard_decline_codes() -> set[str]: decline codes that must not be retried on the same method.
_hard_decline_codes: list[Callable[[], set[str]]] = []


def register_method_users(
    *, find: FindMethodUsers, move: MoveMethodUsers, default_changed: DefaultMethodChanged
) -> None:
    _method_users.update({"find": find, "move": move, "default_changed": default_changed})


def register_hard_decline_codes(provider: Callable[[], set[str]]) -> None:
    _hard_decline_codes[:] = [provider]


def method_users(*, user: User, payment_method_id: str, is_default: bool) -> Sequence[Model]:
    find = _method_users.get("find")
    return find(user=user, payment_method_id=payment_method_id, is_default=is_default) if find else []


def move_method_users(*, user: User, from_id: str, to_id: str) -> int:
    move = _method_users.get("move")
    return move(user=user, from_id=from_id, to_id=to_id) if move else 0


def default_method_changed(*, user: User, now: datetime, payment_method_id: str) -> None:
    changed = _method_users.get("default_changed")
    if changed:
        changed(user=user, now=now, payment_method_id=payment_method_id)


def hard_decline_codes() -> set[str]:
    return set(_hard_decline_codes[0]()) if _hard_decline_codes else set()
