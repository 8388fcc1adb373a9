"""Precedence: operator suspension > termination > payment state (docs/precedence.md). A renewal never
lifts an operator's suspension; a terminated line is never charged again, and money that still
arrives for it is refunded with an alert."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import F

from accounts.history import acting
from accounts.models import Line
from accounts.services import line_status
from payments.models import Charge
from payments.services import refunds

from ..models import Alert, Renewal, RenewalRule
from . import alerts, authentications, rules
from ._base import _claim_batch_size, _log
from ._locks import _cancel, _lock_rule_and_renewal

logger = logging.getLogger(__name__)


# History actions (accounts.ChangeRecord) of the line saves this engine makes.
PAYMENT_SUSPENSION = line_status.PAYMENT_SUSPENSION
LINE_TERMINATED = "line_terminated"
LINE_OWNER_CHANGED = "line_owner_changed"
SUSPENDED_BY_OPERATOR = "line_suspended_by_operator"


def suspended_by_operator(line: Line) -> bool:
    """Whether the line is held by the operator's suspension, which no payment lifts: the line's
    own `suspended_by_operator` flag, set and cleared by the line's transitions
    (accounts.services.line_status; docs/line-states.md)."""
    return line.status == Line.Status.SUSPENDED and line.suspended_by_operator


def _line_holds_renewals(line: Line) -> str:
    """Why no money may be sent for this line now ('' if it may)."""
    if line.status == Line.Status.TERMINATED:
        return LINE_TERMINATED
    if line.status == Line.Status.SUSPENDED and suspended_by_operator(line):
        return SUSPENDED_BY_OPERATOR
    return ""


def _refund_success_on_terminated_line(*, renewal: Renewal, charge: Charge, now: datetime) -> None:
    """Money taken for a line terminated meanwhile (an attempt already at the processor when the
    line was terminated): the cycle is closed without applying anything, the charge is kept on the
    ledger as `refund_due` with an alert, and refunded after the commit exactly like money paid
    after its cycle closed (payments.refund_due_charge; the payments sweep retries it). Never an
    exception: the recording transaction must commit."""
    previous = renewal.status
    renewal.status = Renewal.Status.CANCELLED
    renewal.completed_at = now
    renewal.next_attempt_at = None
    renewal.last_failure_code = LINE_TERMINATED
    renewal.last_failure_message = "paid after the line was terminated: refunded"
    renewal.save()
    charge.status = Charge.Status.REFUND_DUE
    charge.failure_code = LINE_TERMINATED
    charge.failure_message = f"paid for renewal {renewal.pk} after line {renewal.line_id} was terminated: refunded"
    charge.save()
    _log("renewal_cancelled", renewal, previous=previous, reason=LINE_TERMINATED, charge=charge.pk)
    alerts.raise_alert(
        kind=Alert.Kind.UNRECONCILED_CHARGE,
        line=renewal.line,
        renewal=renewal,
        now=now,
        message=f"charge {charge.pk} ({charge.payment_intent_id}) paid renewal {renewal.pk} of terminated line "
        f"{renewal.line_id}: refunding {charge.amount_minor} {charge.currency}",
    )
    charge_id = charge.pk
    transaction.on_commit(lambda: refunds.refund_due_charge(charge_id=charge_id))


def cancel_renewals_of_terminated_lines(*, now: datetime, line_ids: list[int] | None = None) -> list[int]:
    """Terminating a line cancels its open renewals: those not at the processor at once (rule, then
    renewal locks, as everywhere), and a 3-D Secure intent is withdrawn after the commit. An attempt
    in flight is left to its outcome, which refunds a success (`_record_success`). Called when a
    line is terminated and by each dispatcher tick (a termination whose follow-up was lost)."""
    open_ = Renewal.objects.filter(status__in=Renewal.OPEN, line__status=Line.Status.TERMINATED)
    if line_ids is not None:
        open_ = open_.filter(line_id__in=line_ids)
    cancelled: list[Renewal] = []
    for renewal_id, rule_id in list(open_.order_by("id").values_list("id", "rule_id")[: _claim_batch_size()]):
        with transaction.atomic():
            _rule, renewal = _lock_rule_and_renewal(renewal_id, rule_id=rule_id)
            if renewal.status not in Renewal.OPEN or renewal.attempt_in_flight:
                continue
            _cancel(renewal, now=now, reason=LINE_TERMINATED)
            cancelled.append(renewal)
    authentications.withdraw_authentications(charge_ids=authentications._authentications_of(cancelled), now=now)
    if line_ids is not None:
        # The rule goes off too, so the customer's page says what is true: nothing will renew. (No
        # renewal opens for a terminated line whatever the rule says, so a lost hook costs nothing
        # but this display: the tick does not repeat it.)
        for rule in RenewalRule.objects.filter(line_id__in=line_ids, enabled=True, line__status=Line.Status.TERMINATED):
            with acting(None, action="line_terminated", reason=f"line {rule.line_id} terminated"):
                rules.turn_off_rule(rule=rule, now=now)
    return [renewal.pk for renewal in cancelled]


def line_owner_changed(*, line_id: int, now: datetime) -> RenewalRule | None:
    """A line given to another owner: the old owner's rule goes off (its unsent renewals cancelled,
    a 3-D Secure intent withdrawn), so nobody's card is charged by a rule they did not set."""
    rule = RenewalRule.objects.filter(line_id=line_id, enabled=True).first()
    if rule is None:
        return None
    with acting(None, action="owner_changed", reason=f"line {line_id} given to another owner"):
        rules.turn_off_rule(rule=rule, now=now)
    logger.warning("renewal_rule_turned_off rule=%s line=%s reason=owner_changed", rule.pk, line_id)
    return rule


def turn_off_rules_of_given_lines(*, now: datetime) -> list[int]:
    """Each dispatcher tick: enabled rules whose line now has another owner than the one who set
    them are turned off, in case the after-commit hook of the owner change was lost (renewals.signals)."""
    line_ids = list(
        RenewalRule.objects.filter(enabled=True, owner__isnull=False)
        .exclude(line__owner=F("owner"))
        .order_by("id")
        .values_list("line_id", flat=True)[: _claim_batch_size()]
    )
    for line_id in line_ids:
        line_owner_changed(line_id=line_id, now=now)
    return line_ids
