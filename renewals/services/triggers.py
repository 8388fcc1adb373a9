"""Triggers and opening renewals: when a line's rule is met, within its caps, a renewal is opened
with frozen terms (one open renewal per line: a database constraint)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction

from accounts.models import Line

from .. import selectors
from ..models import Alert, Renewal, RenewalRule, RetryPolicy
from . import alerts, claims
from ._base import GB, MB, NOT_RENEWABLE, _log

logger = logging.getLogger(__name__)


def trigger_met(*, rule: RenewalRule, line: Line, now: datetime) -> str:
    """Which trigger of the rule the line meets ('' if none)."""
    if rule.trigger_data_below_mb is not None and line.data_remaining_bytes <= rule.trigger_data_below_mb * MB:
        return "data"
    if (
        rule.trigger_hours_before_expiry is not None
        and line.expires_at is not None
        and line.expires_at <= now + timedelta(hours=rule.trigger_hours_before_expiry)
    ):
        return "expiry"
    return ""


def overage_fee_minor(*, overage_bytes: int, policy: RetryPolicy) -> int:
    # Rounded up to the minor unit: never bill a fraction, never bill zero for real overage. In
    # integers: through a float, 42 GB at 199,999 a GB came out one minor unit short.
    return -(-(overage_bytes * policy.overage_price_per_gb_minor) // GB) if overage_bytes > 0 else 0


def renewal_terms(*, rule: RenewalRule, line: Line, policy: RetryPolicy | None = None) -> tuple[int, int, int]:
    """(amount in minor units, overage bytes billed, their fee) for a renewal of this rule opening
    now: the terms the renewal freezes. The policy is read only when there is overage to price."""
    overage = line.overage_bytes if rule.overage_policy == RenewalRule.OveragePolicy.BILL_OVERAGE else 0
    if overage <= 0:
        return rule.package.price_minor, 0, 0
    policy = policy or RetryPolicy.current()
    fee = overage_fee_minor(overage_bytes=overage, policy=policy)
    return rule.package.price_minor + fee, overage, fee


def _blocked_by_history(*, line: Line, now: datetime, policy: RetryPolicy, after_method_change: bool) -> str:
    """Guards from billing systems that got this wrong: after a decline, no new renewal before the
    policy's delay; after a failed cycle, none until the customer acts (pays or changes method)."""
    last = Renewal.objects.filter(line=line).order_by("-created_at", "-id").first()
    if last is None or last.status == Renewal.Status.SUCCEEDED or last.failures == 0:
        return ""
    if last.status == Renewal.Status.FAILED and not after_method_change:
        return "failed_cycle"
    ended = last.completed_at or last.updated_at
    if not after_method_change and ended + policy.delay_after_failure(last.failures) > now:
        return "decline_cooldown"
    return ""


def open_renewal(
    *,
    rule: RenewalRule,
    now: datetime,
    trigger: str,
    policy: RetryPolicy | None = None,
    after_method_change: bool = False,
) -> Renewal | None:
    """Open a `due` renewal for the rule's line, or None when a guard says no. "No open renewal for
    the line" is the database's constraint (docs/invariants.md #2), not a check here."""
    policy = policy or RetryPolicy.current()
    line = rule.line
    if rule.owner_id is not None and rule.owner_id != line.owner_id:
        # The line changed hands and the hook turning this rule off has not run (or was lost): the
        # dispatcher turns it off (turn_off_rules_of_given_lines); it never opens a cycle for the new owner.
        logger.info("renewal_not_opened line=%s reason=owner_changed", line.pk)
        return None
    blocked = _blocked_by_history(line=line, now=now, policy=policy, after_method_change=after_method_change)
    if blocked:
        logger.info("renewal_not_opened line=%s reason=%s", line.pk, blocked)
        return None
    if selectors.renewals_in_last_day(line=line, now=now) >= rule.max_renewals_per_day:
        alerts.raise_alert(
            kind=Alert.Kind.RENEWAL_CAP_REACHED,
            line=line,
            now=now,
            message=f"line {line.pk} reached {rule.max_renewals_per_day} renewals in 24 hours; trigger {trigger} ignored",
        )
        logger.info("renewal_not_opened line=%s reason=daily_cap", line.pk)
        return None
    amount, overage, fee = renewal_terms(rule=rule, line=line, policy=policy)
    if rule.monthly_spend_cap_minor is not None and (
        selectors.spent_this_month(line=line, now=now, currency=rule.package.currency) + amount
        > rule.monthly_spend_cap_minor
    ):
        alerts.raise_alert(
            kind=Alert.Kind.SPEND_CAP_REACHED,
            line=line,
            now=now,
            message=f"line {line.pk}: a renewal of {amount} {rule.package.currency} would pass the monthly cap {rule.monthly_spend_cap_minor}",
        )
        logger.info("renewal_not_opened line=%s reason=monthly_cap", line.pk)
        return None
    try:
        with transaction.atomic():
            renewal = Renewal.objects.create(
                line=line,
                rule=rule,
                payer_id=rule.owner_id or line.owner_id,
                package=rule.package,
                amount_minor=amount,
                currency=rule.package.currency,
                overage_billed_bytes=overage,
                overage_fee_minor=fee,
                status=Renewal.Status.DUE,
                trigger=trigger,
                next_attempt_at=now,
            )
    except IntegrityError:
        # one_open_renewal_per_line: this line already has a renewal on its way.
        logger.info("renewal_not_opened line=%s reason=open_renewal_exists", line.pk)
        return None
    _log("renewal_opened", renewal, trigger=trigger, amount=amount, currency=renewal.currency)
    return renewal


def evaluate_triggers(*, line_ids: Iterable[int], now: datetime, dispatch: bool = True) -> list[Renewal]:
    """Open renewals for the lines whose enabled rule's trigger is met, and start charging them
    as soon as the caller's transaction commits (a customer at 0 MB waits seconds, not a beat).
    dispatch=False leaves them `due` for the next claim (`renewals_tick --inline`)."""
    line_ids = list(line_ids)
    if not line_ids:
        return []
    # Only the lines at a trigger are loaded as rules: a usage batch of 1000 lines far from their
    # thresholds costs one indexed query, not 1000 rules tested in Python.
    line_ids = selectors.lines_at_a_trigger(now=now, line_ids=line_ids)
    if not line_ids:
        return []
    policy = RetryPolicy.current()
    opened: list[Renewal] = []
    rules = (
        RenewalRule.objects.filter(line_id__in=line_ids, enabled=True)
        .exclude(line__status__in=NOT_RENEWABLE)
        .exclude(line__renewals__status__in=Renewal.OPEN)
        .select_related("line", "package")
        .order_by("line_id")
    )
    with transaction.atomic():
        for rule in rules:
            trigger = trigger_met(rule=rule, line=rule.line, now=now)
            if not trigger:
                continue
            renewal = open_renewal(rule=rule, now=now, trigger=trigger, policy=policy)
            if renewal is not None:
                opened.append(renewal)
        if opened and dispatch:
            ids = [renewal.pk for renewal in opened]
            transaction.on_commit(lambda: claims.dispatch_now(renewal_ids=ids, now=now))
    return opened
