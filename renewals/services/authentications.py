"""Intents waiting for the customer's 3-D Secure that no cycle can use any more: found and withdrawn,
so no old link can pay next to a later attempt."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from payments import gateways
from payments.gateways import GatewayError
from payments.models import Charge

from ..models import Renewal
from . import outcomes
from ._base import AUTHENTICATION_REQUIRED, PENDING, PROCESSOR_ERROR, _kind, authentication_window

logger = logging.getLogger(__name__)


# Cycles that ended without a payment: an intent of theirs still open at the processor is withdrawn.
CLOSED_WITHOUT_PAYMENT = (Renewal.Status.CANCELLED, Renewal.Status.FAILED)
# ... and cycles another charge paid: no second intent of theirs may take money (docs/invariants.md #1).
CLOSED = (*CLOSED_WITHOUT_PAYMENT, Renewal.Status.SUCCEEDED)


def _authentications_of(renewals: list[Renewal]) -> list[int]:
    """The charges of these (just cancelled) renewals still waiting for the customer's 3-D Secure."""
    if not renewals:
        return []
    return list(
        Charge.objects.filter(renewal__in=renewals, status=Charge.Status.REQUIRES_ACTION).values_list("id", flat=True)
    )


def _abandoned(now: datetime) -> Q:
    """Charges whose 3-D Secure intent nobody should complete any more: those of a cancelled, failed or
    paid cycle. Not the customer's own pay-now on a failed cycle that is still the line's latest: that
    is their live payment (docs/money.md), withdrawn only once the policy's authentication time has
    passed, as the off-session one is."""
    newer = Renewal.objects.filter(line_id=OuterRef("renewal__line_id")).filter(
        Q(created_at__gt=OuterRef("renewal__created_at"))
        | Q(created_at=OuterRef("renewal__created_at"), id__gt=OuterRef("renewal_id"))
    )
    # Q & ~Exists is a Q at run time (Q._combine wraps a conditional expression); django-stubs'
    # Q.__and__ accepts only a Q, so mypy falls back to Combinable.__rand__.
    recent_pay_now = Q(
        on_session=True, renewal__status=Renewal.Status.FAILED, sent_at__gt=now - authentication_window()
    )
    live_pay_now: Q = recent_pay_now & ~Exists(newer)  # type: ignore[assignment]
    return Q(status=Charge.Status.REQUIRES_ACTION, renewal__status__in=CLOSED) & ~live_pay_now


def abandoned_authentications(*, limit: int, now: datetime | None = None) -> list[int]:
    """Intents left open on cancelled renewals (the processor did not answer when they were
    withdrawn), on failed ones (failed before 3-D Secure timeouts withdrew first), or on renewals
    another charge paid (a late success): the dispatcher withdraws them again, so no old link can pay
    next to a later attempt. A live pay-now is left to the customer (`_abandoned`)."""
    return list(
        Charge.objects.filter(_abandoned(now or timezone.now())).order_by("id").values_list("id", flat=True)[:limit]
    )


def withdraw_authentications(*, charge_ids: list[int], now: datetime) -> None:
    for charge_id in charge_ids:
        try:
            withdraw_authentication(charge_id=charge_id, now=now)
        except GatewayError as exc:  # left REQUIRES_ACTION on a cancelled renewal: the dispatcher retries
            logger.warning("authentication_withdraw_unreachable charge=%s code=%s", charge_id, exc.code)


def withdraw_authentication(*, charge_id: int, now: datetime) -> Renewal | None:
    """Cancel at the processor the PaymentIntent of a cancelled renewal that waits for 3-D Secure,
    then record what the processor holds. Cancelling first and reading after settles the race with
    the customer's confirmation: if they paid just before, the cancel is refused, the intent reads
    succeeded, and the success wins (package applied, renewal succeeded); the rule stays off.
    None: the intent is still open (the cancel did not get through); the dispatcher asks again."""
    charge = Charge.objects.get(pk=charge_id)
    if charge.status != Charge.Status.REQUIRES_ACTION or not charge.payment_intent_id:
        return None
    gateways.cancel_payment_intent(charge.payment_intent_id)  # refused (and logged) once paid
    outcome = gateways.outcome_from_payment_intent(gateways.retrieve_payment_intent(charge.payment_intent_id))
    if _kind(outcome) in (AUTHENTICATION_REQUIRED, PENDING, PROCESSOR_ERROR):
        logger.warning(
            "authentication_not_withdrawn charge=%s payment_intent=%s status=%s",
            charge.pk,
            charge.payment_intent_id,
            outcome.payment_intent_status,
        )
        return None
    logger.info(
        "authentication_withdrawn charge=%s renewal=%s line=%s payment_intent=%s kind=%s",
        charge.pk,
        charge.renewal_id,
        charge.line_id,
        charge.payment_intent_id,
        _kind(outcome),
    )
    return outcomes.record_charge_outcome(charge_id=charge.pk, outcome=outcome, now=now)
