"""One ledger of attempts (`Charge`) with one outcome recorder (services.record_outcome); what a
settled outcome means for a charge's purpose is a handler registered by the app that owns the
purpose (renewals registers the renewal one in its AppConfig.ready). Payments sits below those
apps and imports none of them for this."""
from __future__ import annotations

from typing import Any, Callable

# handler(*, charge_id: int, outcome: ChargeOutcome, now: datetime): records the outcome on the
# charge and moves the purpose's own state on, in one transaction.
OutcomeHandler = Callable[..., Any]

_handlers: dict[str, OutcomeHandler] = {}


def register(purpose: str, handler: OutcomeHandler) -> None:
    _handlers[purpose] = handler


def handler_for(purpose: str) -> OutcomeHandler | None:
    return _handlers.get(purpose)
