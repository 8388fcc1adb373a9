"""Triggers and opening renewals: when a line's rule is met, within its caps, a renewal is opened
with frozen terms (one open renewal per line: a database constraint)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

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


def _blocked_by_history(*, last: Renewal | None, now: datetime, policy: RetryPolicy, after_method_change: bool) -> str:
    """Guards from billing systems that got this wrong: after a decline, no new renewal before the
    policy's delay; after a failed cycle, none until the customer acts (pays or changes method).
    `last` is the line's latest renewal (selectors.latest_renewals)."""
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
    opened = open_renewals(
        candidates=[(rule, trigger)], now=now, policy=policy, after_method_change=after_method_change
    )
    return opened[0] if opened else None


def open_renewals(
    *,
    candidates: list[tuple[RenewalRule, str]],
    now: datetime,
    policy: RetryPolicy | None = None,
    after_method_change: bool = False,
) -> list[Renewal]:
    """Open a `due` renewal for each (rule, trigger met) whose guards all say yes, in a constant
    number of statements whatever their number (docs/invariants.md, "Opening renewals"): the
    history, daily-cap and monthly-spend facts of every line in one query each, the renewals in
    one INSERT … ON CONFLICT DO NOTHING against one_open_renewal_per_line (a line that got an open
    renewal meanwhile, from a concurrent opener, is skipped, never opened twice). Only a line a cap
    refuses costs more: its operator alert. Rules must come with their line and package loaded."""
    policy = policy or RetryPolicy.current()
    wanted: list[tuple[RenewalRule, str]] = []
    seen: set[int] = set()
    for rule, trigger in sorted(candidates, key=lambda candidate: candidate[0].line_id):
        if rule.line_id in seen:
            continue
        seen.add(rule.line_id)
        if rule.owner_id is not None and rule.owner_id != rule.line.owner_id:
            # The line changed hands and the hook turning this rule off has not run (or was lost): the
            # dispatcher turns it off (turn_off_rules_of_given_lines); it never opens a cycle for the new owner.
            logger.info("renewal_not_opened line=%s reason=owner_changed", rule.line_id)
            continue
        wanted.append((rule, trigger))
    if not wanted:
        return []
    line_ids = [rule.line_id for rule, _trigger in wanted]
    latest = selectors.latest_renewals(line_ids=line_ids)
    renewed_today = selectors.renewals_in_last_day(line_ids=line_ids, now=now)
    capped = [rule.line_id for rule, _trigger in wanted if rule.monthly_spend_cap_minor is not None]
    spent = selectors.spent_this_month(line_ids=capped, now=now) if capped else {}
    to_open: list[tuple[Renewal, str]] = []
    for rule, trigger in wanted:
        line = rule.line
        blocked = _blocked_by_history(
            last=latest.get(line.pk), now=now, policy=policy, after_method_change=after_method_change
        )
        if blocked:
            logger.info("renewal_not_opened line=%s reason=%s", line.pk, blocked)
            continue
        if renewed_today.get(line.pk, 0) >= rule.max_renewals_per_day:
            alerts.raise_alert(
                kind=Alert.Kind.RENEWAL_CAP_REACHED,
                line=line,
                now=now,
                message=f"line {line.pk} reached {rule.max_renewals_per_day} renewals in 24 hours; trigger {trigger} ignored",
            )
            logger.info("renewal_not_opened line=%s reason=daily_cap", line.pk)
            continue
        amount, overage, fee = renewal_terms(rule=rule, line=line, policy=policy)
        currency = rule.package.currency
        if (
            rule.monthly_spend_cap_minor is not None
            and spent.get((line.pk, currency), 0) + amount > rule.monthly_spend_cap_minor
        ):
            alerts.raise_alert(
                kind=Alert.Kind.SPEND_CAP_REACHED,
                line=line,
                now=now,
                message=f"line {line.pk}: a renewal of {amount} {currency} would pass the monthly cap {rule.monthly_spend_cap_minor}",
            )
            logger.info("renewal_not_opened line=%s reason=monthly_cap", line.pk)
            continue
        renewal = Renewal(
            line=line,
            rule=rule,
            payer_id=rule.owner_id or line.owner_id,
            package=rule.package,
            amount_minor=amount,
            currency=currency,
            overage_billed_bytes=overage,
            overage_fee_minor=fee,
            status=Renewal.Status.DUE,
            trigger=trigger,
            next_attempt_at=now,
        )
        to_open.append((renewal, trigger))
    if not to_open:
        return []
    inserted = _insert_ignoring_open_lines([renewal for renewal, _trigger in to_open])
    opened: list[Renewal] = []
    for renewal, trigger in to_open:
        pk = inserted.get(renewal.line_id)
        if pk is None:
            # one_open_renewal_per_line: this line already has a renewal on its way.
            logger.info("renewal_not_opened line=%s reason=open_renewal_exists", renewal.line_id)
            continue
        renewal.pk = pk
        renewal._state.adding = False
        renewal._state.db = connection.alias
        _log("renewal_opened", renewal, trigger=trigger, amount=renewal.amount_minor, currency=renewal.currency)
        opened.append(renewal)
    return opened


def _insert_ignoring_open_lines(renewals: list[Renewal]) -> dict[int, int]:
    """INSERT the renewals in one statement (chunks on SQLite), skipping every row that would give
    its line a second open renewal; {line id: new renewal id} for the rows inserted. Rows go in
    line order, so two openers of the same lines wait on each other in one order, never in a
    cycle. PostgreSQL gets one array per column (a few parameters, not 22 per renewal)."""
    fields = [field for field in Renewal._meta.concrete_fields if not field.primary_key]
    rows = [
        [field.get_db_prep_save(field.pre_save(renewal, True), connection) for field in fields] for renewal in renewals
    ]
    qn = connection.ops.quote_name
    table = qn(Renewal._meta.db_table)
    columns = ", ".join(qn(str(field.column)) for field in fields)
    tail = f"ON CONFLICT DO NOTHING RETURNING {qn('id')}, {qn('line_id')}"
    statements: list[tuple[str, Any]] = []
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
        columns_of_rows = [list(column) for column in zip(*rows, strict=True)]
        statements.append((f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) {tail}", columns_of_rows))
    else:
        placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
        per_statement = max(1, 999 // len(fields))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            values = ", ".join([placeholder] * len(chunk))
            statements.append(
                (f"INSERT INTO {table} ({columns}) VALUES {values} {tail}", [v for row in chunk for v in row])
            )
    inserted: dict[int, int] = {}
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
            inserted.update({line_id: pk for pk, line_id in cursor.fetchall()})
    return inserted


def evaluate_triggers(*, line_ids: Iterable[int], now: datetime, dispatch: bool = True) -> list[Renewal]:
    """Open renewals for the lines whose enabled rule's trigger is met, and start charging them
    as soon as the caller's transaction commits (a customer at 0 MB waits seconds, not a beat).
    dispatch=False leaves them `due` for the next claim (`renewals_tick --inline`). Set-based: the
    statements are the same for one line or ten thousand (open_renewals)."""
    line_ids = list(line_ids)
    if not line_ids:
        return []
    # Only the lines at a trigger are loaded as rules: a usage batch of 1000 lines far from their
    # thresholds costs one indexed query, not 1000 rules tested in Python.
    line_ids = selectors.lines_at_a_trigger(now=now, line_ids=line_ids)
    if not line_ids:
        return []
    policy = RetryPolicy.current()
    rules = (
        RenewalRule.objects.filter(line_id__in=line_ids, enabled=True)
        .exclude(line__status__in=NOT_RENEWABLE)
        .exclude(line__renewals__status__in=Renewal.OPEN)
        .select_related("line", "package")
        .order_by("line_id")
    )
    with transaction.atomic():
        candidates = []
        for rule in rules:
            trigger = trigger_met(rule=rule, line=rule.line, now=now)
            if trigger:
                candidates.append((rule, trigger))
        opened = open_renewals(candidates=candidates, now=now, policy=policy)
        if opened and dispatch:
            ids = [renewal.pk for renewal in opened]
            transaction.on_commit(lambda: claims.dispatch_now(renewal_ids=ids, now=now))
    return opened
