"""Closing a customer's account, at their request or an operator's (docs/data-rights.md): the
steps in their one order, each through the service that owns it, so that no renewal can charge
and no line stays on while the person is erased.

1. auto-renewal turned off (rules.turn_off_rule: under the rule's lock, the renewals not yet sent
   are cancelled and their 3-D Secure intents withdrawn at the processor), and any other open
   renewal cancelled (operator.cancel_renewal);
2. purchase intents waiting for 3-D Secure withdrawn;
3. if a charge is still in flight (sent to the processor, outcome unknown, or a 3-D Secure payment
   the processor did not let us withdraw): stop here with `PaymentInFlight`. Nothing is erased;
   auto-renewal stays off, so no new charge can start, and the customer asks again in a minute
   (we refuse rather than wait: a card payment settles in seconds, but an unknown outcome can
   take the reconciliation window, and a request must not hang on it);
4. payment methods detached and the processor's customer emptied (payments.services.closure);
5. lines terminated through the line state machine (the network is told through the outbox);
6. the ledger pseudonymised and the person erased (accounts.services.erasure), with one history
   row saying when and by whom."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from accounts.models import Line, User
from accounts.services import erasure, line_status
from payments.services import closure as payment_closure

from ..models import Renewal, RenewalRule
from . import operator, rules

logger = logging.getLogger(__name__)

CUSTOMER = "customer"
OPERATOR = "operator"


class PaymentInFlight(Exception):
    """A charge of the customer's is at the processor: the account is not closed yet."""

    def __init__(self, charge_ids: list[int]):
        super().__init__(charge_ids)
        self.charge_ids = charge_ids


@dataclass(frozen=True)
class Closure:
    user_id: int
    pseudonym: str
    renewals_cancelled: int
    methods_detached: int
    lines_terminated: int


def close_account(*, user: User, actor: User | None, closed_by: str, reason: str, now: datetime) -> Closure:
    """Close `user`'s account. Raises PaymentInFlight (nothing erased) or a payments GatewayError
    (the processor did not answer; nothing erased) and erasure.CustomerOnly for staff. Safe to call
    again after any of them: every step skips what is already done."""
    if user.is_staff or user.is_superuser:
        raise erasure.CustomerOnly(user.pk)
    cancelled = 0
    for rule in RenewalRule.objects.filter(line__owner=user, enabled=True).order_by("pk"):
        cancelled += len(rules.turn_off_rule(rule=rule, now=now))
    for renewal_id in Renewal.objects.filter(line__owner=user, status__in=Renewal.OPEN).values_list("pk", flat=True):
        cancelled += operator.cancel_renewal(renewal_id=renewal_id, now=now, reason="account_closed")
    payment_closure.withdraw_open_purchases(user=user)
    in_flight = payment_closure.charges_in_flight(user=user)
    if in_flight:
        logger.warning("account_closure_refused user=%s reason=payment_in_flight charges=%s", user.pk, in_flight)
        raise PaymentInFlight(in_flight)
    detached = payment_closure.forget_customer(user=user)
    terminated = 0
    for line_id in Line.objects.filter(owner=user).exclude(status=Line.Status.TERMINATED).values_list("pk", flat=True):
        terminated += line_status.terminate_line(line_id=line_id, reason="account closed", actor=actor, now=now)
    payment_closure.pseudonymise_charges(user=user)
    erased = erasure.erase_person(user_id=user.pk, actor=actor, closed_by=closed_by, reason=reason, now=now)
    logger.info(
        "account_closed user=%s closed_by=%s renewals_cancelled=%s methods_detached=%s lines_terminated=%s",
        user.pk,
        closed_by,
        cancelled,
        detached,
        terminated,
    )
    return Closure(
        user_id=user.pk,
        pseudonym=erasure.pseudonym_for(erased.pk),
        renewals_cancelled=cancelled,
        methods_detached=detached,
        lines_terminated=terminated,
    )
