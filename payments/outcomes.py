"""One ledger of attempts (`Charge`) with one outcome recorder (services.record_outcome); what a
settled outcome means for a charge's purpose is a handler registered by the app that owns the
purpose (renewals registers the renewal one in its AppConfig.ready). Payments sits below those
apps and imports none of them for this."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .gateways import ChargeOutcome


class OutcomeHandler(Protocol):
    """Records the outcome on the charge and moves the purpose's own state on, in one transaction."""

    def __call__(self, *, charge_id: int, outcome: ChargeOutcome, now: datetime) -> object: ...


_handlers: dict[str, OutcomeHandler] = {}


def register(purpose: str, handler: OutcomeHandler) -> None:
    _handlers[purpose] = handler


def handler_for(purpose: str) -> OutcomeHandler | None:
    return _handlers.get(purpose)


class AlertHandler(Protocol):
    """Tells an operator about money payments gives back on its own (a purchase paid for a
    terminated line, or paid after we had closed it as failed). Operator alerts live in renewals,
    which registers this in its AppConfig."""

    def __call__(self, *, line_id: int, reason: str, message: str, now: datetime) -> object: ...


_alert: list[AlertHandler] = []


def register_alert(handler: AlertHandler) -> None:
    _alert[:] = [handler]


def alert_operator(*, line_id: int, reason: str, message: str, now: datetime) -> bool:
    """Raise an operator alert through the registered handler; False (the caller's ERROR log is
    then the only trace) when no app registered one."""
    if not _alert:
        return False
    _alert[0](line_id=line_id, reason=reason, message=message, now=now)
    return True


class NewLinePurchaseHandler(Protocol):
    """What a paid purchase that has no line yet means (a new eSIM: provisioning orders its
    profile). Called inside record_outcome's transaction, with the charge locked, so the order
    commits with the payment's success or not at all."""

    def __call__(self, *, charge_id: int, now: datetime) -> object: ...


_new_line: list[NewLinePurchaseHandler] = []


def register_new_line_purchase(handler: NewLinePurchaseHandler) -> None:
    _new_line[:] = [handler]


def new_line_purchase_paid(*, charge_id: int, now: datetime) -> bool:
    """False when no app takes new-line purchases (the caller then gives the money back)."""
    if not _new_line:
        return False
    _new_line[0](charge_id=charge_id, now=now)
    return True
