"""What every family of the engine shares: the charge outcome kinds as the gateway spells them,
the engine's errors, its settings and its log line. Private to renewals.services."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

from django.conf import settings

from accounts.models import Line
from payments.models import Charge

from .. import selectors
from ..models import Renewal, RetryPolicy

logger = logging.getLogger(__name__)

MB = 1024**2
GB = 1024**3

# Charge outcome kinds, as payments.gateways.OutcomeKind spells them.
SUCCEEDED = "succeeded"
PENDING = "pending"  # accepted, settles later (SEPA): a webhook or reconciliation decides
SOFT = "soft_decline"
HARD = "hard_decline"
AUTHENTICATION_REQUIRED = "authentication_required"
PROCESSOR_ERROR = "processor_error"  # from the gateway: outcome UNKNOWN, reconcile first
THROTTLED = "throttled"  # from the gateway: our write limiter sent nothing; not an attempt
# An attempt reconciliation proved the processor never received: safe to retry as a new attempt.
NOT_SENT = "not_sent"
# An intent waiting for 3-D Secure that we withdrew for a new attempt: not a decline, spends no retry.
SUPERSEDED = "superseded"
DECLINE_KINDS = {
    SOFT: Charge.DeclineKind.SOFT,
    HARD: Charge.DeclineKind.HARD,
    AUTHENTICATION_REQUIRED: Charge.DeclineKind.AUTHENTICATION_REQUIRED,
    NOT_SENT: Charge.DeclineKind.PROCESSOR_ERROR,
}

# Lines a trigger never renews (renewals.selectors.NOT_RENEWABLE says why).
NOT_RENEWABLE = selectors.NOT_RENEWABLE


class RenewalError(Exception):
    """Base of the engine's domain errors."""


class RenewalNotPayable(RenewalError):
    """The renewal is already paid or cancelled."""


# An email not sent this long after its renewal changed has lost its task: the dispatcher resends it.
NOTICE_SWEEP_AFTER = timedelta(minutes=2)


def _reconcile_after() -> timedelta:
    return getattr(settings, "RENEWALS_RECONCILE_AFTER", timedelta(minutes=10))


def authentication_window(policy: RetryPolicy | None = None) -> timedelta:
    """The customer's time to confirm a payment with the bank: the policy's hours, or
    settings.RENEWALS_AUTHENTICATION_WINDOW when set (the chaos run's seconds)."""
    override = getattr(settings, "RENEWALS_AUTHENTICATION_WINDOW", None)
    return override if override is not None else timedelta(hours=(policy or RetryPolicy.current()).authentication_hours)


def _claim_batch_size() -> int:
    return getattr(settings, "RENEWALS_CLAIM_BATCH_SIZE", 100)


def _log(event: str, renewal: Renewal, **extra: object) -> None:
    details = " ".join(f"{key}={value}" for key, value in extra.items())
    logger.info(
        "%s renewal=%s line=%s status=%s attempts=%s %s",
        event,
        renewal.pk,
        renewal.line_id,
        renewal.status,
        renewal.attempts,
        details,
    )


class ChargeResult(Protocol):
    """What the engine reads of a charge's outcome: payments.gateways.ChargeOutcome, or
    reconciliation.Outcome for an attempt the processor never received."""

    @property
    def kind(self) -> str: ...
    @property
    def payment_intent_id(self) -> str | None: ...
    @property
    def failure_code(self) -> str: ...
    @property
    def failure_message(self) -> str: ...


def _kind(outcome: ChargeResult) -> str:
    return str(getattr(outcome.kind, "value", outcome.kind))


def new_renewal_charge(
    *,
    renewal: Renewal,
    line: Line,
    idempotency_key: str,
    payment_method_id: str,
    payment_method_summary: str,
    now: datetime,
    attempt: int | None,
    on_session: bool = False,
    next_check_at: datetime | None = None,
) -> Charge:
    """A pending attempt at the renewal's frozen terms (docs/money.md): its package, amount and
    currency, never the rule's or the package's of today. Off-session and pay-now alike. Callers
    refuse an ownerless line first (a charge's customer is NOT NULL)."""
    assert line.owner_id is not None
    return Charge.objects.create(
        user_id=line.owner_id,
        line=line,
        package=renewal.package,
        renewal=renewal,
        attempt=attempt,
        on_session=on_session,
        purpose=Charge.Purpose.RENEWAL,
        amount_minor=renewal.amount_minor,
        currency=renewal.currency,
        status=Charge.Status.PENDING,
        idempotency_key=idempotency_key,
        payment_method_id=payment_method_id,
        payment_method_summary=payment_method_summary[:100],
        sent_at=now,
        next_check_at=next_check_at,
    )
