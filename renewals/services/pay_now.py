"""Pay-now: the customer pays a renewal that needs action or has failed, on-session, at its frozen
terms, through payments' on-session flow (the page is renewals.views.pay_renewal)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Line, User
from payments import gateways
from payments.gateways import OutcomeKind
from payments.models import Charge
from payments.services import errors as payment_errors
from payments.services import methods as payment_methods
from payments.services import on_session, recording

from ..models import Renewal
from . import precedence, reconciliation
from ._base import RenewalNotPayable, _log, new_renewal_charge
from ._locks import _is_latest, _lock_rule_and_renewal

logger = logging.getLogger(__name__)


PAYABLE = (
    Renewal.Status.RETRY_SCHEDULED,
    Renewal.Status.AWAITING_METHOD,
    Renewal.Status.REQUIRES_ACTION,
    Renewal.Status.FAILED,
)


def start_pay_now(
    *, renewal_id: int, payment_method_id: str, now: datetime, payment_method_summary: str = ""
) -> Charge:
    """Write the customer's on-session attempt: a pending `Charge` at the renewal's frozen terms,
    with its own key. The renewal itself is not touched: pay-now never moves the retry cycle
    (docs/money.md). While the charge is pending no off-session attempt is claimed or sent. The
    payments app then calls gateways.charge_on_session and `record_charge_outcome`. Works with the
    rule off: paying a failed renewal is the customer's own choice."""
    with transaction.atomic():
        _rule, renewal = _lock_rule_and_renewal(renewal_id)
        if renewal.status not in PAYABLE:
            raise RenewalNotPayable(renewal.status)
        if renewal.attempt_in_flight:
            raise RenewalNotPayable("attempt_in_flight")
        if renewal.status == Renewal.Status.FAILED and not _is_latest(renewal):
            raise RenewalNotPayable("line_has_a_newer_renewal")  # that cycle is the one to pay
        if renewal.line.status == Line.Status.TERMINATED:
            raise RenewalNotPayable(precedence.LINE_TERMINATED)  # it would only be refunded (precedence)
        line = renewal.line
        if line.owner_id is None:
            raise RenewalNotPayable("line_has_no_owner")  # nobody to charge: a charge's customer is NOT NULL
        charge = new_renewal_charge(
            renewal=renewal,
            line=line,
            attempt=None,
            on_session=True,
            idempotency_key=f"renewal-{renewal.pk}-pay-now-{uuid.uuid4().hex}",
            payment_method_id=payment_method_id,
            payment_method_summary=payment_method_summary,
            now=now,
        )
        _log("pay_now_started", renewal, charge=charge.pk)
    return charge


def payable_renewal(*, user: User, renewal_id: int) -> Renewal:
    """The user's renewal that can be paid now (PAYABLE: needs action, waiting for a method,
    retrying, or failed), or NotPayable. Another customer's renewal is 'not found'."""
    renewal = Renewal.objects.select_related("line", "package").filter(pk=renewal_id, line__owner=user).first()
    if renewal is None:
        raise payment_errors.NotPayable(_("Renewal not found."), code="not_found")
    if renewal.status not in PAYABLE:
        raise payment_errors.NotPayable(_("This renewal has nothing left to pay."), code="not_payable")
    if renewal.line.status == Line.Status.TERMINATED:
        # Money paid for a terminated line is only refunded (docs/precedence.md): never take it.
        raise payment_errors.NotPayable(
            _("This line is terminated; no package can be bought for it."), code="line_terminated"
        )
    return renewal


def pay_renewal_now(*, user: User, renewal: Renewal, payment_method_id: str, now: datetime | None = None) -> Charge:
    """The customer pays a renewal that needs action or has failed, on-session (the purchase
    flow), at the renewal's frozen terms. Earlier intents of the renewal left waiting for
    authentication are withdrawn first, so only this payment can take the money; one the customer
    completed meanwhile is recorded and returned instead, and nothing is charged again. A declined
    pay-now leaves the renewal's retry cycle as it was (docs/money.md); a success succeeds it.
    Raises payments' NotPayable and PaymentMethodNotFound, whose messages the page shows."""
    now = now or timezone.now()
    renewal = payable_renewal(user=user, renewal_id=renewal.pk)
    method = payment_methods.own_method(user, payment_method_id)
    for old in renewal.charges.filter(status=Charge.Status.REQUIRES_ACTION):
        old = on_session.withdraw_open_payment(old)
        if old.status == Charge.Status.SUCCEEDED:
            logger.info(
                "pay_now_already_paid renewal=%s line=%s charge=%s pi=%s",
                renewal.pk,
                renewal.line_id,
                old.pk,
                old.payment_intent_id,
            )
            return old
        if old.status != Charge.Status.FAILED:
            # Still open at the processor (or the processor did not answer): a second payment now
            # could take the money twice.
            raise payment_errors.NotPayable(
                _("A payment for this renewal is in progress. Please check again in a minute."), code="in_flight"
            )
    try:
        charge = start_pay_now(
            renewal_id=renewal.pk,
            payment_method_id=method.id,
            now=now,
            payment_method_summary=gateways.payment_method_summary(method),
        )
    except RenewalNotPayable as exc:
        logger.info("pay_now_refused renewal=%s line=%s reason=%s", renewal.pk, renewal.line_id, exc)
        if str(exc) == "attempt_in_flight":
            raise payment_errors.NotPayable(
                _("A payment for this renewal is in progress. Please check again in a minute."), code="in_flight"
            ) from exc
        if str(exc) == precedence.LINE_TERMINATED:
            raise payment_errors.NotPayable(
                _("This line is terminated; no package can be bought for it."), code="line_terminated"
            ) from exc
        raise payment_errors.NotPayable(_("This renewal has nothing left to pay."), code="not_payable") from exc
    logger.info("pay_now_started charge=%s renewal=%s line=%s user=%s", charge.pk, renewal.pk, renewal.line_id, user.pk)
    outcome = gateways.charge_on_session(charge=charge, customer_id=method.customer_id, payment_method_id=method.id)
    if outcome.kind is OutcomeKind.THROTTLED:
        reconciliation.release_unsent_attempt(charge_id=charge.pk, now=now, previous=renewal)
        on_session.processor_busy(charge, outcome)
    return recording.record_outcome(charge_id=charge.pk, outcome=outcome, now=now)
