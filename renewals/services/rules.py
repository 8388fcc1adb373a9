"""The customer's actions on auto-renewal: save a rule, turn it off (cancels what is not sent yet),
a new default payment method waking the renewals that waited for one, and the rules that charge a
method (payments asks through payments.hooks, registered in RenewalsConfig.ready)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.history import acting, record_changes
from accounts.models import Line, User
from payments.models import Charge
from payments.services.methods import own_method

from ..models import Renewal, RenewalRule
from . import authentications, claims, triggers
from ._base import NOT_RENEWABLE, _log
from ._locks import _cancel

logger = logging.getLogger(__name__)


def save_rule(*, line: Line, values: dict[str, object], now: datetime) -> RenewalRule:
    """Save the confirmed rule (the form validated `values`); turning it on evaluates the triggers
    at once, so a line already below its threshold renews now."""
    with transaction.atomic():
        rule = RenewalRule.objects.select_for_update().filter(line=line).first()
        if rule is None:
            rule = RenewalRule(line=line)
        for name, value in values.items():
            setattr(rule, name, value)
        rule.owner_id = line.owner_id  # the customer confirming the rule is the one it charges
        rule.full_clean()
        rule.save()
        logger.info(
            "renewal_rule_saved rule=%s line=%s enabled=%s package=%s", rule.pk, line.pk, rule.enabled, rule.package_id
        )
        waiting = authentications._authentications_of(_cancel_unsent(rule=rule, now=now)) if not rule.enabled else []
    authentications.withdraw_authentications(charge_ids=waiting, now=now)
    if rule.enabled:
        triggers.evaluate_triggers(line_ids=[line.pk], now=now)
    return rule


def _cancel_unsent(*, rule: RenewalRule, now: datetime) -> list[Renewal]:
    cancelled = []
    for renewal in Renewal.objects.select_for_update().filter(line_id=rule.line_id, status__in=Renewal.OPEN):
        if renewal.charges.filter(status=Charge.Status.PENDING).exists():
            # Already at the processor: its outcome is recorded, and a decline is not retried.
            _log("renewal_left_in_flight", renewal, reason="rule_off")
            continue
        _cancel(renewal, now=now, reason="rule_off")
        cancelled.append(renewal)
    return cancelled


def turn_off_rule(*, rule: RenewalRule, now: datetime) -> list[Renewal]:
    """Turn auto-renewal off at once (docs/invariants.md #3): under the rule's lock, every renewal of the
    line not yet sent to the processor is cancelled, and one waiting for 3-D Secure has its
    PaymentIntent cancelled at the processor, so the customer's later confirmation charges nothing."""
    with transaction.atomic():
        rule = RenewalRule.objects.select_for_update().get(pk=rule.pk)
        rule.enabled = False
        rule.save(update_fields=["enabled", "updated_at"])
        logger.info("renewal_rule_turned_off rule=%s line=%s", rule.pk, rule.line_id)
        cancelled = _cancel_unsent(rule=rule, now=now)
        waiting = authentications._authentications_of(cancelled)
    authentications.withdraw_authentications(charge_ids=waiting, now=now)
    return cancelled


def payment_method_changed(*, user: User, now: datetime, payment_method_id: str = "") -> list[int]:
    """The customer set a new default method (the payments app calls this): each renewal of theirs
    waiting for a method, or whose cycle failed, gets one immediate attempt; a line whose trigger
    is met and has no renewal starts one (docs/invariants.md: hard declines). One method earns a cycle one
    attempt: a cycle that already charged `payment_method_id` is not woken again by it, so
    switching the default back and forth cannot retry a failed renewal at will."""
    woken: list[int] = []
    with transaction.atomic():
        for rule in (
            RenewalRule.objects.select_for_update(of=("self",))
            .filter(line__owner=user, enabled=True)
            .select_related("line", "package")
            .order_by("id")
        ):
            latest = (
                Renewal.objects.select_for_update().filter(line_id=rule.line_id).order_by("-created_at", "-id").first()
            )
            if (
                latest is not None
                and latest.status in (Renewal.Status.AWAITING_METHOD, Renewal.Status.FAILED)
                and payment_method_id
                and latest.charges.filter(payment_method_id=payment_method_id).exists()
            ):
                _log("renewal_not_woken", latest, reason="method_already_tried")
                continue
            if latest is not None and latest.status in (Renewal.Status.AWAITING_METHOD, Renewal.Status.FAILED):
                previous = latest.status
                latest.status = Renewal.Status.DUE
                latest.next_attempt_at = now
                latest.completed_at = None
                try:
                    with transaction.atomic():
                        latest.save()
                except IntegrityError:  # cannot happen for the latest renewal; never two open ones
                    continue
                _log("renewal_due", latest, previous=previous, reason="payment_method_changed")
                woken.append(latest.pk)
            elif (latest is None or latest.status not in Renewal.OPEN) and rule.line.status not in NOT_RENEWABLE:
                trigger = triggers.trigger_met(rule=rule, line=rule.line, now=now)
                if trigger:
                    opened = triggers.open_renewal(rule=rule, now=now, trigger=trigger, after_method_change=True)
                    if opened is not None:
                        woken.append(opened.pk)
        if woken:
            transaction.on_commit(lambda: claims.dispatch_now(renewal_ids=woken, now=now))
    return woken


def rules_using_method(*, user: User, payment_method_id: str, is_default: bool) -> list[RenewalRule]:
    """Enabled rules that would charge this method: named explicitly, or through the default when
    it is the default."""
    condition = Q(payment_method_id=payment_method_id)
    if is_default:
        condition |= Q(payment_method_id="")
    return list(RenewalRule.objects.filter(condition, line__owner=user, enabled=True).select_related("line"))


def move_rules_to_method(*, user: User, from_id: str, to_id: str) -> int:
    """Point the customer's rules that charge `from_id` at `to_id`, with one history row per rule
    (a bulk update fires no history signal), attributed to the customer who chose the replacement."""
    with transaction.atomic():
        rules = list(
            RenewalRule.objects.select_for_update().filter(line__owner=user, payment_method_id=from_id).order_by("pk")
        )
        RenewalRule.objects.filter(pk__in=[rule.pk for rule in rules]).update(payment_method_id=to_id)
        with acting(user):
            record_changes(
                [(rule, {"payment_method_id": from_id}, {"payment_method_id": to_id}) for rule in rules],
                action="payment_method_replaced",
            )
    return len(rules)


def use_method_for_auto_renewal(*, user: User, line: Line, payment_method_id: str) -> RenewalRule:
    """After paying a renewal by hand with a card, make that card the one the line's rule charges
    (the card that failed would fail the next renewal again). The customer must own the line, the
    rule and the card; raises RenewalRule.DoesNotExist or payments' PaymentMethodNotFound."""
    own_method(user, payment_method_id)
    with transaction.atomic():
        rule = RenewalRule.objects.select_for_update().get(line=line, line__owner=user, owner=user)
        before = rule.payment_method_id
        RenewalRule.objects.filter(pk=rule.pk).update(payment_method_id=payment_method_id)
        rule.payment_method_id = payment_method_id
        with acting(user):
            record_changes(
                [(rule, {"payment_method_id": before}, {"payment_method_id": payment_method_id})],
                action="payment_method_chosen_after_pay_now",
            )
    logger.info("renewal_rule_method_chosen rule=%s line=%s", rule.pk, line.pk)
    return rule
