"""The renewal engine: every transition of a `Renewal` (DESIGN.md's state machine) is one function
here, in one transaction, with one structured log line. Tasks, views, the admin and the partner
usage API call these; nothing else writes renewals.

Lock order, everywhere: rule, then renewal, then charge, then line. The charge step and turning
a rule off both take the rule's row lock first, which is what makes "turning a rule off wins"
(invariant 3) hold without deadlocks.

Precedence (invariant 10, docs/precedence.md): operator suspension > termination > payment state.
A renewal never lifts a suspension the operator made (only one this engine made for a failed
cycle: the line's `suspended_by_operator` flag tells them apart); a terminated line is
never charged again, and a success that still arrives for it is recorded, its cycle closed and the
money refunded with an alert. Both are checked under the locks where money is sent or recorded.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, Max, OuterRef, Q, Sum

from accounts import heartbeats
from accounts.history import acting
from accounts.models import Line
from accounts.services import apply_package_to_locked_line, line_status
from payments.models import Charge, next_authentication_check

from . import notifications
from .models import Alert, Renewal, RenewalRule, RetryPolicy

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

# Lines a trigger never renews: not yet activated, gone for good, or suspended (by a failed cycle,
# which only the customer's payment or new method reopens, or by the operator, whose suspension a
# renewal must not lift behind their back).
NOT_RENEWABLE = (Line.Status.INACTIVE, Line.Status.TERMINATED, Line.Status.SUSPENDED)


class RenewalError(Exception):
    """Base of the engine's domain errors."""


class RenewalNotPayable(RenewalError):
    """The renewal is already paid or cancelled."""


# An email not sent this long after its renewal changed has lost its task: the dispatcher resends it.
NOTICE_SWEEP_AFTER = timedelta(minutes=2)


def _reconcile_after() -> timedelta:
    return getattr(settings, "RENEWALS_RECONCILE_AFTER", timedelta(minutes=10))


def _claim_batch_size() -> int:
    return getattr(settings, "RENEWALS_CLAIM_BATCH_SIZE", 100)


def _log(event: str, renewal: Renewal, **extra: Any) -> None:
    details = " ".join(f"{key}={value}" for key, value in extra.items())
    logger.info("%s renewal=%s line=%s status=%s attempts=%s %s", event, renewal.pk, renewal.line_id, renewal.status, renewal.attempts, details)


# --- alerts ----------------------------------------------------------------------------------

def raise_alert(*, kind: str, line: Line, message: str, renewal: Renewal | None = None, now: datetime) -> Alert:
    """One open alert per line and kind (a database constraint): a runaway line alerts once."""
    existing = Alert.objects.filter(line=line, kind=kind, resolved_at__isnull=True).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            alert = Alert.objects.create(kind=kind, line=line, renewal=renewal, message=message[:500], created_at=now)
    except IntegrityError:  # raised concurrently by another worker: theirs stands
        return Alert.objects.get(line=line, kind=kind, resolved_at__isnull=True)
    logger.error("renewal_alert kind=%s line=%s renewal=%s message=%s", kind, line.pk, renewal.pk if renewal else None, message)
    return alert


def alert_from_payments(*, line_id: int, reason: str, message: str, now: datetime) -> Alert:
    """payments.outcomes' alert hook (registered in RenewalsConfig.ready): money payments gives back
    on its own. A purchase paid for a terminated line alerts as a renewal paid for one does."""
    kind = Alert.Kind.PAID_AFTER_CLOSED if reason == "paid_after_closed" else Alert.Kind.UNRECONCILED_CHARGE
    return raise_alert(kind=kind, line=Line.objects.get(pk=line_id), message=message, now=now)


# --- triggers and opening renewals -----------------------------------------------------------

def resolve_alert(*, alert_id: int, now: datetime) -> bool:
    """An operator has dealt with an alert. False if it was already resolved."""
    resolved = Alert.objects.filter(pk=alert_id, resolved_at__isnull=True).update(resolved_at=now)
    if resolved:
        logger.info("alert_resolved alert=%s", alert_id)
    return bool(resolved)


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


def month_start(now: datetime, time_zone: str = "UTC") -> datetime:
    """Midnight on the first of `now`'s month in `time_zone` (the customer's month, not UTC's: a
    Shanghai customer's 1 December starts at 16:00 UTC on 30 November)."""
    try:
        zone = ZoneInfo(time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return now.astimezone(zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def renewals_in_last_day(*, line: Line, now: datetime) -> int:
    return Renewal.objects.filter(line=line, status=Renewal.Status.SUCCEEDED, completed_at__gt=now - timedelta(hours=24)).count()


def spent_this_month(*, line: Line, now: datetime, currency: str) -> int:
    """Money taken in `currency` by this line's renewals since the first of the owner's month (in
    their time zone), net of refunds. A cap is in one currency: other currencies never add to it."""
    time_zone = line.owner.time_zone if line.owner_id else "UTC"
    total = Charge.objects.filter(
        renewal__line=line, status__in=Charge.MONEY_TAKEN, currency=currency, settled_at__gte=month_start(now, time_zone)
    ).aggregate(total=Sum(F("amount_minor") - F("refunded_minor")))["total"]
    return int(total or 0)


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


def open_renewal(*, rule: RenewalRule, now: datetime, trigger: str, policy: RetryPolicy | None = None,
                 after_method_change: bool = False) -> Renewal | None:
    """Open a `due` renewal for the rule's line, or None when a guard says no. "No open renewal for
    the line" is the database's constraint (invariant 2), not a check here."""
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
    if renewals_in_last_day(line=line, now=now) >= rule.max_renewals_per_day:
        raise_alert(kind=Alert.Kind.RENEWAL_CAP_REACHED, line=line, now=now,
                    message=f"line {line.pk} reached {rule.max_renewals_per_day} renewals in 24 hours; trigger {trigger} ignored")
        logger.info("renewal_not_opened line=%s reason=daily_cap", line.pk)
        return None
    amount, overage, fee = renewal_terms(rule=rule, line=line, policy=policy)
    if rule.monthly_spend_cap_minor is not None and (
            spent_this_month(line=line, now=now, currency=rule.package.currency) + amount > rule.monthly_spend_cap_minor):
        raise_alert(kind=Alert.Kind.SPEND_CAP_REACHED, line=line, now=now,
                    message=f"line {line.pk}: a renewal of {amount} {rule.package.currency} would pass the monthly cap {rule.monthly_spend_cap_minor}")
        logger.info("renewal_not_opened line=%s reason=monthly_cap", line.pk)
        return None
    try:
        with transaction.atomic():
            renewal = Renewal.objects.create(
                line=line, rule=rule, payer_id=rule.owner_id or line.owner_id, package=rule.package, amount_minor=amount, currency=rule.package.currency,
                overage_billed_bytes=overage, overage_fee_minor=fee, status=Renewal.Status.DUE, trigger=trigger, next_attempt_at=now,
            )
    except IntegrityError:
        # one_open_renewal_per_line: this line already has a renewal on its way.
        logger.info("renewal_not_opened line=%s reason=open_renewal_exists", line.pk)
        return None
    _log("renewal_opened", renewal, trigger=trigger, amount=amount, currency=renewal.currency)
    return renewal


def _lines_at_a_trigger(*, now: datetime, line_ids: list[int] | None = None) -> list[int]:
    """Lines whose enabled rule's trigger may be met and that have no open renewal, read through
    the line's copies of its rule's triggers (kept by the database, see Line.renew_below_bytes):
    two partial-index range scans, so the cost follows the lines at a trigger, not every rule.
    The data trigger is decided exactly here; the expiry one up to the widest window of any rule
    (SQLite cannot multiply a column by an interval), and `trigger_met` decides per rule."""
    # One entry of rule_enabled_expiry_hours_idx.
    widest_hours = RenewalRule.objects.filter(enabled=True).aggregate(hours=Max("trigger_hours_before_expiry"))["hours"]
    near = Q(renew_below_bytes__isnull=False, data_headroom__lte=0)
    if widest_hours is not None:
        near |= Q(renew_hours_before_expiry__isnull=False, expires_at__lte=now + timedelta(hours=widest_hours))
    lines = (
        # The same expression as line_data_trigger_headroom_idx, so the planner reads that index.
        Line.objects.alias(data_headroom=F("data_remaining_bytes") - F("renew_below_bytes"))
        .filter(near)
        .exclude(status__in=NOT_RENEWABLE)
        .exclude(renewals__status__in=Renewal.OPEN)
    )
    if line_ids is not None:
        lines = lines.filter(pk__in=line_ids)
    return list(lines.order_by().values_list("pk", flat=True))


def evaluate_triggers(*, line_ids: Iterable[int], now: datetime, dispatch: bool = True) -> list[Renewal]:
    """Open renewals for the lines whose enabled rule's trigger is met, and start charging them
    as soon as the caller's transaction commits (a customer at 0 MB waits seconds, not a beat).
    dispatch=False leaves them `due` for the next claim (`renewals_tick --inline`)."""
    line_ids = list(line_ids)
    if not line_ids:
        return []
    # Only the lines at a trigger are loaded as rules: a usage batch of 1000 lines far from their
    # thresholds costs one indexed query, not 1000 rules tested in Python.
    line_ids = _lines_at_a_trigger(now=now, line_ids=line_ids)
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
            transaction.on_commit(lambda: dispatch_now(renewal_ids=ids, now=now))
    return opened


def lines_with_enabled_rules_ids(*, now: datetime) -> list[int]:
    """The beat sweep's candidates: lines whose enabled rule's data trigger is met or whose validity
    ends within the widest expiry window, without an open renewal (`trigger_met` decides precisely)."""
    return _lines_at_a_trigger(now=now)


# --- claiming ----------------------------------------------------------------------------------

def claim_due_renewals(*, now: datetime, limit: int | None = None, renewal_ids: list[int] | None = None) -> list[int]:
    """Claim due work (invariant 4): rows locked with SKIP LOCKED, so two dispatchers at once get
    disjoint batches; claimed rows become `charging` before the lock is released."""
    limit = limit or _claim_batch_size()
    with transaction.atomic():
        # A pending charge here is the customer's pay-now at the processor: wait for its outcome.
        due = Renewal.objects.filter(status__in=Renewal.CLAIMABLE, next_attempt_at__lte=now).exclude(
            charges__status=Charge.Status.PENDING)
        if renewal_ids is not None:
            due = due.filter(pk__in=renewal_ids)
        ids = list(
            due.select_for_update(skip_locked=True).order_by("next_attempt_at", "id").values_list("id", flat=True)[:limit]
        )
        if ids:
            Renewal.objects.filter(pk__in=ids).update(status=Renewal.Status.CHARGING, claimed_at=now, next_attempt_at=None)
    for renewal_id in ids:
        logger.info("renewal_claimed renewal=%s status=charging", renewal_id)
    return ids


def _enqueue_charges(renewal_ids: list[int]) -> None:
    from .tasks import charge_renewal_task, delay_each

    # A claim is a row: requeue_lost_claims hands it out again once the broker is back.
    delay_each(charge_renewal_task, renewal_ids, event="charge_enqueue_failed", field="renewal")


def dispatch_now(*, renewal_ids: list[int], now: datetime) -> list[int]:
    """Claim these renewals (if still due) and hand them to the workers at once."""
    ids = claim_due_renewals(now=now, renewal_ids=renewal_ids, limit=len(renewal_ids))
    _enqueue_charges(ids)
    return ids


def requeue_lost_claims(*, now: datetime) -> list[int]:
    """Claimed renewals whose task never ran (a broker lost, a worker gone before it started): no
    attempt is in flight for them, so running the charge step again is safe."""
    stale = now - _reconcile_after()
    with transaction.atomic():
        ids = list(
            Renewal.objects.select_for_update(skip_locked=True)
            .filter(status=Renewal.Status.CHARGING, claimed_at__lt=stale)
            .exclude(charges__status=Charge.Status.PENDING)
            .values_list("id", flat=True)[: _claim_batch_size()]
        )
        if ids:
            Renewal.objects.filter(pk__in=ids).update(claimed_at=now)
    for renewal_id in ids:
        logger.warning("renewal_requeued renewal=%s reason=claim_without_attempt", renewal_id)
    return ids


# --- the charge step -------------------------------------------------------------------------

@dataclass
class PreparedCharge:
    charge: Charge
    customer_id: str
    payment_method_id: str


_UNKNOWN = object()


def _locked_renewal(renewal_id: int, *, with_rule: bool = False) -> Renewal:
    """The renewal under its row lock, with `attempt_in_flight` (a pending charge: an attempt at
    the processor or unknown) read in the same statement. of=self: joined rows (the line, the
    package every customer shares, the rule) stay unlocked; the line is locked last, where the
    package is applied."""
    related = ("line", "package", "rule") if with_rule else ("line", "package")
    in_flight = Charge.objects.filter(renewal=OuterRef("pk"), status=Charge.Status.PENDING)
    return (
        Renewal.objects.select_for_update(of=("self",)).select_related(*related)
        .annotate(attempt_in_flight=Exists(in_flight)).get(pk=renewal_id)
    )


def _lock_rule_and_renewal(renewal_id: int, *, rule_id: Any = _UNKNOWN) -> tuple[RenewalRule | None, Renewal]:
    """Lock order: the rule first (turning it off takes it first too), then the renewal. A caller
    that has read the renewal already passes its rule_id (a renewal's rule never changes)."""
    if rule_id is _UNKNOWN:
        rule_id = Renewal.objects.filter(pk=renewal_id).values_list("rule_id", flat=True).get()
    rule = RenewalRule.objects.select_for_update(of=("self",)).select_related("package").filter(pk=rule_id).first() if rule_id else None
    return rule, _locked_renewal(renewal_id)


def _cancel(renewal: Renewal, *, now: datetime, reason: str) -> None:
    previous = renewal.status
    renewal.status = Renewal.Status.CANCELLED
    renewal.completed_at = now
    renewal.next_attempt_at = None
    renewal.last_failure_message = reason
    renewal.save()
    _log("renewal_cancelled", renewal, previous=previous, reason=reason)


def prepare_charge(*, renewal_id: int, customer_id: str, payment_method_id: str, now: datetime,
                   payment_method_summary: str = "", rule_id: Any = _UNKNOWN,
                   payment_method_type: str | None = None) -> PreparedCharge | None:
    """Write the attempt's `Charge` row and idempotency key, or say why nothing may be sent.

    Runs under the rule's row lock: a rule turned off before this commits cancels the renewal
    (invariant 3); turned off after, the attempt is already at the processor and its outcome is
    recorded. A pending charge means an attempt is in flight or unknown: never a second one.
    """
    method_type = payment_method_type or _payment_method_type(payment_method_id)
    with transaction.atomic():
        rule, renewal = _lock_rule_and_renewal(renewal_id, rule_id=rule_id)
        if renewal.status != Renewal.Status.CHARGING:
            _log("charge_skipped", renewal, reason="not_charging")
            return None
        if renewal.attempt_in_flight:
            _log("charge_skipped", renewal, reason="attempt_in_flight")
            return None
        if rule is None or not rule.enabled:
            _cancel(renewal, now=now, reason="rule_off")
            return None
        held = _line_holds_renewals(renewal.line)
        if held:
            # Precedence: termination and the operator's suspension both outrank payment state.
            _cancel(renewal, now=now, reason=held)
            return None
        if renewal.payer_id is not None and renewal.line.owner_id != renewal.payer_id:
            # The line was given to someone else: this cycle's payer is no longer its owner, and the new
            # owner never pays for a rule they did not set (docs/precedence.md).
            _cancel(renewal, now=now, reason=LINE_OWNER_CHANGED)
            return None
        if not payment_method_id:
            renewal.status = Renewal.Status.AWAITING_METHOD
            renewal.last_failure_code = "no_payment_method"
            renewal.last_failure_message = ""
            renewal.save()
            _log("renewal_awaiting_method", renewal, reason="no_payment_method")
            notifications.notify_later(renewal, notifications.NEEDS_ACTION)
            return None
        line = renewal.line
        attempt = renewal.attempts + 1
        # The renewal's frozen terms, never the rule's or the package's of today (docs/money.md).
        charge = Charge.objects.create(
            user_id=line.owner_id, line=line, package=renewal.package, renewal=renewal, attempt=attempt,
            purpose=Charge.Purpose.RENEWAL, amount_minor=renewal.amount_minor, currency=renewal.currency, status=Charge.Status.PENDING,
            idempotency_key=f"renewal-{renewal.pk}-attempt-{attempt}-{uuid.uuid4().hex}",
            payment_method_id=payment_method_id, payment_method_summary=payment_method_summary[:100], sent_at=now,
            next_check_at=now + _check_interval(method_type),
        )
        renewal.attempts = attempt
        renewal.save(update_fields=["attempts", "updated_at"])
        _log("charge_prepared", renewal, charge=charge.pk, amount=charge.amount_minor, currency=charge.currency)
    return PreparedCharge(charge=charge, customer_id=customer_id, payment_method_id=payment_method_id)


def charge_renewal(*, renewal_id: int, now: datetime | None = None) -> Renewal:
    """The charge step: prepare (commit), call the processor off-session, record the outcome in a
    new transaction. Safe to run twice: the second run finds the renewal not `charging` or an
    attempt in flight, and sends nothing."""
    from django.utils import timezone

    from payments import gateways
    from payments.selectors import method_for_off_session

    waiting = Charge.objects.filter(renewal=OuterRef("pk"), status=Charge.Status.REQUIRES_ACTION)
    renewal = Renewal.objects.select_related("line__owner", "rule", "payer").annotate(payment_waiting=Exists(waiting)).get(pk=renewal_id)
    if renewal.status != Renewal.Status.CHARGING:
        _log("charge_skipped", renewal, reason="not_charging")
        return renewal
    # The cycle's payer, never whoever owns the line now (prepare_charge cancels if they differ).
    user = renewal.payer if renewal.payer_id is not None else renewal.line.owner
    if user is None:
        with transaction.atomic():
            _rule, renewal = _lock_rule_and_renewal(renewal_id)
            if renewal.status == Renewal.Status.CHARGING and not renewal.attempt_in_flight:
                _cancel(renewal, now=now or timezone.now(), reason="line_has_no_owner")
        return renewal
    if renewal.payment_waiting and not _withdraw_open_payments(renewal_id=renewal_id):
        return Renewal.objects.get(pk=renewal_id)
    # Look-ups happen outside any row lock; the rule itself is re-read under the lock. One read of
    # the payments mirror gives the method, its customer and its summary: a method attached to a
    # customer means the processor's customer exists, so ensure_customer (a locking transaction)
    # is needed only for a method the mirror does not hold.
    rule_method = renewal.rule.payment_method_id if renewal.rule else ""
    method = method_for_off_session(user=user, payment_method_id=rule_method)
    method_type = None  # read from the mirror by prepare_charge when the method is not in hand
    if method is not None:
        payment_method_id, customer_id, summary = method.id, method.customer_id, gateways.payment_method_summary(method)
        method_type = method.type or "card"
    elif rule_method:
        payment_method_id, customer_id, summary = rule_method, gateways.ensure_customer(user).id, ""
    else:
        payment_method_id = customer_id = summary = ""
    prepared = prepare_charge(
        renewal_id=renewal_id, customer_id=customer_id, payment_method_id=payment_method_id, now=now or timezone.now(),
        payment_method_summary=summary, rule_id=renewal.rule_id, payment_method_type=method_type,
    )
    if prepared is None:
        return Renewal.objects.get(pk=renewal_id)
    outcome = gateways.charge_off_session(
        charge=prepared.charge, customer_id=prepared.customer_id, payment_method_id=prepared.payment_method_id
    )
    if _kind(outcome) == THROTTLED:
        return release_unsent_attempt(charge_id=prepared.charge.pk, now=now or timezone.now())
    if _kind(outcome) in (PROCESSOR_ERROR, PENDING):
        # Unknown (time-out, connection reset, 5xx) or not settled yet: the charge stays pending and
        # is reconciled by looking its PaymentIntent up, never re-sent blindly (invariant 1).
        logger.warning("charge_outcome_unknown renewal=%s charge=%s kind=%s code=%s", renewal_id, prepared.charge.pk,
                       _kind(outcome), getattr(outcome, "failure_code", ""))
        return Renewal.objects.get(pk=renewal_id)
    return _record_outcome(renewal_id=renewal_id, charge_id=prepared.charge.pk, outcome=outcome, now=now or timezone.now())


def _withdraw_open_payments(*, renewal_id: int) -> bool:
    """Before an off-session attempt, withdraw the renewal's intents still waiting for 3-D Secure
    (a pay-now left at the bank's page, a cycle that timed out waiting): otherwise the customer
    could complete one next to our new attempt and pay twice. False: one was paid (the renewal has
    succeeded) or could not be withdrawn; no attempt now, requeue_lost_claims brings it back."""
    from payments.services import withdraw_open_payment

    for charge in Charge.objects.filter(renewal_id=renewal_id, status=Charge.Status.REQUIRES_ACTION):
        if withdraw_open_payment(charge).status != Charge.Status.FAILED:
            logger.warning("charge_skipped renewal=%s reason=open_payment charge=%s", renewal_id, charge.pk)
            return False
    return True


# --- outcomes --------------------------------------------------------------------------------

def _kind(outcome: Any) -> str:
    return str(getattr(outcome.kind, "value", outcome.kind))


def _outcome_fields(outcome: Any) -> dict[str, str]:
    return {
        "kind": _kind(outcome),
        "payment_intent_id": getattr(outcome, "payment_intent_id", "") or "",
        "failure_code": getattr(outcome, "failure_code", "") or "",
        "failure_message": getattr(outcome, "failure_message", "") or "",
        "payment_method_summary": getattr(outcome, "payment_method_summary", "") or "",
    }


def record_charge_outcome(*, charge_id: int, outcome: Any, now: datetime) -> Renewal:
    """Record what the processor said about one attempt of a renewal (off-session, reconciled, or
    the customer's pay-now) and move the renewal on. Idempotent: an attempt already settled is
    left alone, and a second success for one renewal is refused by the database (invariant 1)."""
    renewal_id = Charge.objects.filter(pk=charge_id).values_list("renewal_id", flat=True).get()
    return _record_outcome(renewal_id=renewal_id, charge_id=charge_id, outcome=outcome, now=now)


def _record_outcome(*, renewal_id: int, charge_id: int, outcome: Any, now: datetime) -> Renewal:
    result = _outcome_fields(outcome)
    if result["kind"] in (PROCESSOR_ERROR, PENDING, THROTTLED):
        raise ValueError(f"outcome {result['kind']} is not an outcome: reconcile or release the charge instead")
    with transaction.atomic():
        # The rule is read, not locked: a success wins whatever the rule says, and a rule turned off
        # meanwhile waits for this renewal's lock, then cancels what this leaves open.
        renewal = _locked_renewal(renewal_id, with_rule=True)
        rule = renewal.rule
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        closed = charge.status not in (Charge.Status.PENDING, Charge.Status.REQUIRES_ACTION)
        if closed and not (result["kind"] == SUCCEEDED and charge.status == Charge.Status.FAILED):
            _log("outcome_ignored", renewal, charge=charge.pk, charge_status=charge.status, kind=result["kind"])
            return renewal
        if result["payment_intent_id"]:
            charge.payment_intent_id = result["payment_intent_id"]
        if result["payment_method_summary"]:
            charge.payment_method_summary = result["payment_method_summary"]
        kind = result["kind"]
        rule_on = rule is not None and rule.enabled
        if (charge.status == Charge.Status.REQUIRES_ACTION and kind not in (SUCCEEDED, AUTHENTICATION_REQUIRED)
                and getattr(outcome, "payment_intent_status", "") == "canceled"):
            # Only we cancel an intent waiting for 3-D Secure (a withdrawal before a new attempt, a rule
            # turned off, a timeout): Stripe's payment_intent.canceled for it, which may be recorded
            # before our own read of the intent, is not a decline and spends no retry (docs/money.md).
            result["failure_code"], result["failure_message"] = SUPERSEDED, result["failure_message"] or "Withdrawn at the processor."
        # Only an off-session attempt moves the retry cycle; the customer's pay-now never does.
        moves_cycle = renewal.status == Renewal.Status.CHARGING and not charge.on_session and result["failure_code"] != SUPERSEDED
        if kind == SUCCEEDED and _paid_too_late(renewal=renewal, charge=charge, closed=closed):
            _refund_paid_too_late(renewal=renewal, charge=charge, now=now)
        elif kind == SUCCEEDED:
            if closed:  # no outcome is dropped: its cycle is still open, so it pays for it
                _log("late_success_counted", renewal, charge=charge.pk, charge_status=charge.status)
            _record_success(renewal=renewal, charge=charge, now=now)
        elif kind == AUTHENTICATION_REQUIRED:
            if charge.status != Charge.Status.REQUIRES_ACTION:
                # Looked up at the processor until it settles, like a pending attempt (reconcile_charge).
                charge.next_check_at = next_authentication_check(sent_at=charge.sent_at, now=now, cap=_reconcile_after())
            charge.status = Charge.Status.REQUIRES_ACTION
            charge.decline_kind = Charge.DeclineKind.AUTHENTICATION_REQUIRED
            charge.failure_code = result["failure_code"] or "authentication_required"
            charge.failure_message = result["failure_message"][:500]
            charge.save()
            if moves_cycle:
                renewal.status = Renewal.Status.REQUIRES_ACTION
                renewal.last_failure_code = charge.failure_code
                renewal.last_failure_message = charge.failure_message
                # The customer's time to pay now; then the cycle fails like one out of retries.
                renewal.suspend_at = now + timedelta(hours=RetryPolicy.current().authentication_hours)
                renewal.save()
                _log("renewal_requires_action", renewal, charge=charge.pk)
                notifications.notify_later(renewal, notifications.NEEDS_ACTION)
        elif kind == NOT_SENT and renewal.status == Renewal.Status.CHARGING:
            _record_not_sent(renewal=renewal, charge=charge, result=result, rule_on=rule_on, now=now)
        else:
            charge.status = Charge.Status.FAILED
            charge.decline_kind = DECLINE_KINDS.get(kind, Charge.DeclineKind.PROCESSOR_ERROR)
            charge.failure_code = result["failure_code"][:100]
            charge.failure_message = result["failure_message"][:500]
            charge.settled_at = now
            charge.save()
            if moves_cycle:
                _record_decline(renewal=renewal, charge=charge, hard=(kind == HARD), rule_on=rule_on, now=now)
            else:
                # A declined pay-now (the customer saw it in the browser), or an intent withdrawn from
                # a cancelled renewal: the cycle stays where it was.
                _log("pay_now_declined", renewal, charge=charge.pk, code=charge.failure_code)
                if not rule_on and charge.on_session and renewal.status in Renewal.OPEN and renewal.status != Renewal.Status.CHARGING:
                    # The rule went off while this pay-now was at the processor (_cancel_unsent left the
                    # renewal to it): the cancellation it deferred happens now. A failed one stays payable.
                    _cancel(renewal, now=now, reason="rule_off")
    return renewal


def _cycle_open(renewal: Renewal) -> bool:
    """Whether a success may still pay for this renewal: it is open, or it failed and is still the
    line's latest cycle (the one pay-now, a new method or the operator's retry would pay)."""
    return renewal.status in Renewal.OPEN or (renewal.status == Renewal.Status.FAILED and _is_latest(renewal))


def _paid_too_late(*, renewal: Renewal, charge: Charge, closed: bool) -> bool:
    """A success that must not pay for the renewal: another charge already did (a charge succeeds
    only with its renewal, in one transaction), or we had closed this charge and its cycle has
    closed since. (A charge still open when its renewal was cancelled wins: the customer paid
    before the rule went off.)"""
    return renewal.status == Renewal.Status.SUCCEEDED or (closed and not _cycle_open(renewal))


def _refund_paid_too_late(*, renewal: Renewal, charge: Charge, now: datetime) -> None:
    """No outcome is dropped (docs/money.md): money taken for a cycle that no longer wants it is
    kept on the ledger as `refund_due`, an operator is alerted, and it is refunded after the
    commit (payments.refund_due_charge; the payments sweep retries it)."""
    from payments import services as payment_services

    previous = charge.status
    charge.status = Charge.Status.REFUND_DUE
    charge.decline_kind = ""
    charge.failure_code = "paid_after_closed"
    charge.failure_message = f"paid after renewal {renewal.pk} was {renewal.status}: refunded"
    charge.settled_at = now
    charge.save()
    raise_alert(kind=Alert.Kind.PAID_AFTER_CLOSED, line=renewal.line, renewal=renewal, now=now,
                message=f"charge {charge.pk} ({charge.payment_intent_id}) paid renewal {renewal.pk} after it was "
                        f"{renewal.status} (charge was {previous}): refunded automatically")
    _log("paid_after_cycle_closed", renewal, charge=charge.pk, charge_was=previous, payment_intent=charge.payment_intent_id)
    charge_id = charge.pk
    transaction.on_commit(lambda: payment_services.refund_due_charge(charge_id=charge_id))


def _record_success(*, renewal: Renewal, charge: Charge, now: datetime) -> None:
    charge.status = Charge.Status.SUCCEEDED
    charge.decline_kind = ""
    charge.failure_code = ""
    charge.failure_message = ""
    charge.settled_at = now
    charge.save()
    line = Line.objects.select_for_update().get(pk=renewal.line_id)
    if line.status == Line.Status.TERMINATED:
        _refund_success_on_terminated_line(renewal=renewal, charge=charge, now=now)
        return
    # An operator's suspension outlives the payment (precedence): apply_package keeps the line
    # suspended and writes no resume; the customer still gets what they paid for.
    was_suspended = line.status == Line.Status.SUSPENDED and not suspended_by_operator(line)
    previous = renewal.status
    # Invariant 6: the package and the renewal's success commit together.
    line = apply_package_to_locked_line(line=line, package=renewal.package, now=now, overage_billed_bytes=renewal.overage_billed_bytes)
    renewal.line = line
    renewal.status = Renewal.Status.SUCCEEDED
    renewal.completed_at = now
    renewal.next_attempt_at = None
    renewal.last_failure_code = ""
    renewal.last_failure_message = ""
    renewal.resumed_line = was_suspended
    renewal.save()
    Alert.objects.filter(line=line, kind=Alert.Kind.REPEATED_FAILURES, resolved_at__isnull=True).update(resolved_at=now)
    _log("renewal_succeeded", renewal, previous=previous, charge=charge.pk, payment_intent=charge.payment_intent_id)
    notifications.notify_later(renewal, notifications.RESTORED if was_suspended else notifications.SUCCEEDED)
    # The cycle is paid: any other intent of it still waiting for 3-D Secure (an emailed link) is
    # withdrawn after the commit, so it cannot take the money a second time; the dispatcher's
    # sweep of abandoned intents repeats it if this is lost. (The current off-session attempt of a
    # charging cycle needs no look: the charge step withdrew every such intent before sending it.)
    current_attempt = previous == Renewal.Status.CHARGING and not charge.on_session and charge.attempt == renewal.attempts
    others = [] if current_attempt else list(
        Charge.objects.filter(renewal=renewal, status=Charge.Status.REQUIRES_ACTION).exclude(pk=charge.pk).values_list("id", flat=True))
    if others:
        transaction.on_commit(lambda: withdraw_authentications(charge_ids=others, now=now))


def _record_not_sent(*, renewal: Renewal, charge: Charge, result: dict[str, str], rule_on: bool, now: datetime) -> None:
    """An attempt reconciliation proved the processor never received (an outage, a worker gone
    before the call): the attempt is closed on the ledger, but it is not a decline. It spends no
    retry and sends no email; the cycle is due again at once, so a customer whose card is fine is
    never suspended for our outage (invariant 11)."""
    charge.status = Charge.Status.FAILED
    charge.decline_kind = Charge.DeclineKind.PROCESSOR_ERROR
    charge.failure_code = result["failure_code"][:100] or NOT_SENT
    charge.failure_message = result["failure_message"][:500]
    charge.settled_at = now
    charge.save()
    if not rule_on:
        _cancel(renewal, now=now, reason="rule_off")
        return
    renewal.status = Renewal.Status.RETRY_SCHEDULED if renewal.failures else Renewal.Status.DUE
    renewal.next_attempt_at = now
    renewal.save()
    _log("renewal_attempt_not_sent", renewal, charge=charge.pk, next_attempt_at=now.isoformat())


def _record_decline(*, renewal: Renewal, charge: Charge, hard: bool, rule_on: bool, now: datetime) -> None:
    policy = RetryPolicy.current()
    renewal.failures += 1
    renewal.last_failure_code = charge.failure_code
    renewal.last_failure_message = charge.failure_message
    renewal.next_attempt_at = None
    if renewal.failures >= policy.alert_after_failures:
        raise_alert(kind=Alert.Kind.REPEATED_FAILURES, line=renewal.line, renewal=renewal, now=now,
                    message=f"renewal {renewal.pk} of line {renewal.line_id} declined {renewal.failures} times (last: {charge.failure_code})")
    if not rule_on:
        renewal.save()
        _cancel(renewal, now=now, reason="rule_off")
        return
    if hard:
        renewal.status = Renewal.Status.AWAITING_METHOD
        renewal.save()
        _log("renewal_awaiting_method", renewal, charge=charge.pk, code=charge.failure_code)
        notifications.notify_later(renewal, notifications.NEEDS_ACTION)
        return
    if renewal.failures >= policy.max_failures:
        renewal.status = Renewal.Status.FAILED
        renewal.completed_at = now
        renewal.suspend_at = now + timedelta(hours=policy.grace_hours)
        renewal.save()
        _log("renewal_failed", renewal, charge=charge.pk, code=charge.failure_code, suspend_at=renewal.suspend_at.isoformat())
        raise_alert(kind=Alert.Kind.RENEWAL_FAILED, line=renewal.line, renewal=renewal, now=now,
                    message=f"renewal {renewal.pk} of line {renewal.line_id} failed after {renewal.failures} attempts")
        if renewal.suspend_at <= now:
            _suspend_line_for(renewal=renewal, now=now)
        return
    renewal.status = Renewal.Status.RETRY_SCHEDULED
    renewal.next_attempt_at = now + policy.delay_after_failure(renewal.failures)
    renewal.save()
    _log("renewal_retry_scheduled", renewal, charge=charge.pk, code=charge.failure_code, next_attempt_at=renewal.next_attempt_at.isoformat())
    notifications.notify_later(renewal, notifications.RETRY_SCHEDULED)


# --- precedence: operator suspension > termination > payment state -------------------------------

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
    from payments import services as payment_services

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
    raise_alert(kind=Alert.Kind.UNRECONCILED_CHARGE, line=renewal.line, renewal=renewal, now=now,
                message=f"charge {charge.pk} ({charge.payment_intent_id}) paid renewal {renewal.pk} of terminated line "
                        f"{renewal.line_id}: refunding {charge.amount_minor} {charge.currency}")
    charge_id = charge.pk
    transaction.on_commit(lambda: payment_services.refund_due_charge(charge_id=charge_id))


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
    withdraw_authentications(charge_ids=_authentications_of(cancelled), now=now)
    if line_ids is not None:
        # The rule goes off too, so the customer's page says what is true: nothing will renew. (No
        # renewal opens for a terminated line whatever the rule says, so a lost hook costs nothing
        # but this display: the tick does not repeat it.)
        for rule in RenewalRule.objects.filter(line_id__in=line_ids, enabled=True, line__status=Line.Status.TERMINATED):
            with acting(None, action="line_terminated", reason=f"line {rule.line_id} terminated"):
                turn_off_rule(rule=rule, now=now)
    return [renewal.pk for renewal in cancelled]


def line_owner_changed(*, line_id: int, now: datetime) -> RenewalRule | None:
    """A line given to another owner: the old owner's rule goes off (its unsent renewals cancelled,
    a 3-D Secure intent withdrawn), so nobody's card is charged by a rule they did not set."""
    rule = RenewalRule.objects.filter(line_id=line_id, enabled=True).first()
    if rule is None:
        return None
    with acting(None, action="owner_changed", reason=f"line {line_id} given to another owner"):
        turn_off_rule(rule=rule, now=now)
    logger.warning("renewal_rule_turned_off rule=%s line=%s reason=owner_changed", rule.pk, line_id)
    return rule


def turn_off_rules_of_given_lines(*, now: datetime) -> list[int]:
    """Each dispatcher tick: enabled rules whose line now has another owner than the one who set
    them are turned off, in case the after-commit hook of the owner change was lost (renewals.signals)."""
    line_ids = list(
        RenewalRule.objects.filter(enabled=True, owner__isnull=False).exclude(line__owner=F("owner"))
        .order_by("id").values_list("line_id", flat=True)[: _claim_batch_size()]
    )
    for line_id in line_ids:
        line_owner_changed(line_id=line_id, now=now)
    return line_ids


# --- suspension --------------------------------------------------------------------------------

def _suspend_line_for(*, renewal: Renewal, now: datetime) -> None:
    """The line of a cycle that stayed unpaid is suspended (the line's own transition service
    writes the state and the network command); the renewal records that it did, once."""
    renewal.line_suspended_at = now
    renewal.save(update_fields=["line_suspended_at", "updated_at"])
    previous = line_status.suspend_line_for_payment(line_id=renewal.line_id, reason=f"renewal {renewal.pk} failed", now=now)
    if previous is None:
        _log("line_not_suspended", renewal, line_status=Line.objects.values_list("status", flat=True).get(pk=renewal.line_id))
        return
    _log("line_suspended", renewal, line_status_before=previous)
    notifications.notify_later(renewal, notifications.SUSPENDED)


AUTHENTICATION_TIMEOUT = "authentication_timeout"


def _withdraw_overdue_authentications(*, now: datetime) -> None:
    """Before a 3-D Secure cycle fails for time, its PaymentIntent is cancelled at the processor:
    left open, the old email's link could still pay it after a new card had paid the cycle again
    (charged twice). If the customer paid just before, the cancel is refused and the success is
    recorded instead (withdraw_authentication). Processor calls: outside any row lock."""
    from payments.gateways import GatewayError

    charge_ids = list(
        Charge.objects.filter(status=Charge.Status.REQUIRES_ACTION, renewal__status=Renewal.Status.REQUIRES_ACTION,
                              renewal__suspend_at__lte=now)
        .order_by("id").values_list("id", flat=True)[: _claim_batch_size()]
    )
    for charge_id in charge_ids:
        try:
            withdraw_authentication(charge_id=charge_id, now=now)
        except GatewayError as exc:  # still open: its cycle waits for the next tick, not failed
            logger.warning("authentication_withdraw_unreachable charge=%s code=%s", charge_id, exc.code)


def _fail_unconfirmed(*, now: datetime) -> list[int]:
    """Renewals whose 3-D Secure the customer did not complete in the policy's time fail, exactly
    like a cycle out of retries: alert, line suspended (network command, email). The customer's
    pay-now still works afterwards and resumes the line. Only once no intent of the cycle is still
    open at the processor (`_withdraw_overdue_authentications` ran first)."""
    failed = []
    renewals = list(
        Renewal.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(status=Renewal.Status.REQUIRES_ACTION, suspend_at__lte=now)
        .exclude(charges__status=Charge.Status.REQUIRES_ACTION)
        .select_related("line")[: _claim_batch_size()]
    )
    for renewal in renewals:
        renewal.status = Renewal.Status.FAILED
        renewal.completed_at = now
        renewal.next_attempt_at = None
        renewal.last_failure_code = AUTHENTICATION_TIMEOUT
        renewal.last_failure_message = "The payment was not confirmed with the bank in time."
        renewal.suspend_at = now
        renewal.save()
        _log("renewal_failed", renewal, reason=AUTHENTICATION_TIMEOUT)
        raise_alert(kind=Alert.Kind.RENEWAL_FAILED, line=renewal.line, renewal=renewal, now=now,
                    message=f"renewal {renewal.pk} of line {renewal.line_id}: 3-D Secure not completed in time")
        _suspend_line_for(renewal=renewal, now=now)
        failed.append(renewal.pk)
    return failed


def suspend_overdue_lines(*, now: datetime) -> list[int]:
    """Failed renewals whose grace has passed suspend their line (once); so do renewals whose
    3-D Secure was not completed in time, which fail first."""
    done = []
    _withdraw_overdue_authentications(now=now)
    with transaction.atomic():
        done.extend(_fail_unconfirmed(now=now))
        renewals = list(
            Renewal.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=Renewal.Status.FAILED, line_suspended_at__isnull=True, suspend_at__lte=now)
            .select_related("line")[: _claim_batch_size()]
        )
        for renewal in renewals:
            # A later renewal of the line already paid: nothing to suspend for.
            if Renewal.objects.filter(line_id=renewal.line_id, status=Renewal.Status.SUCCEEDED, completed_at__gt=renewal.completed_at).exists():
                renewal.line_suspended_at = now
                renewal.save(update_fields=["line_suspended_at", "updated_at"])
                continue
            _suspend_line_for(renewal=renewal, now=now)
            done.append(renewal.pk)
    return done


# --- reconciliation --------------------------------------------------------------------------

def _reconcile_per_tick() -> int:
    return getattr(settings, "RENEWALS_RECONCILE_PER_TICK", 100)


# Payment types whose outcome takes days (a debit the bank settles later): looked up daily, not
# every few minutes; anything else is a card-like attempt, looked up minutes after it was sent.
DELAYED_SETTLEMENT_TYPES = ("sepa_debit",)


def _check_interval(method_type: str) -> timedelta:
    if method_type in DELAYED_SETTLEMENT_TYPES:
        return getattr(settings, "RENEWALS_RECONCILE_DELAYED_EVERY", timedelta(days=1))
    return _reconcile_after()


def _payment_method_type(payment_method_id: str) -> str:
    """From the payments mirror only (no processor call): unknown reads as a card, checked sooner."""
    if not payment_method_id:
        return "card"
    from djstripe.models import PaymentMethod

    return PaymentMethod.objects.filter(id=payment_method_id).values_list("stripe_data__type", flat=True).first() or "card"


def _stuck_alert_after() -> timedelta:
    """A pending attempt not looked up this long after its check was due (starved, or the processor
    unreachable), or in flight longer than any debit settles, raises an alert."""
    return getattr(settings, "RENEWALS_STUCK_CHARGE_ALERT_AFTER", timedelta(hours=1))


def _longest_settlement() -> timedelta:
    return getattr(settings, "RENEWALS_LONGEST_SETTLEMENT", timedelta(days=14))


def _due_to_check(now: datetime) -> Q:
    # Rows from before next_check_at existed are due as card attempts were.
    return Q(next_check_at__lte=now) | Q(next_check_at__isnull=True, sent_at__lt=now - _reconcile_after())


def stale_pending_charges(*, now: datetime, limit: int | None = None) -> list[int]:
    """Pending renewal attempts whose next look-up is due, earliest due first (each charge has its
    own time, see Charge.next_check_at): a backlog of debits in flight cannot starve the rest. So
    are charges of open cycles waiting for 3-D Secure: the customer may have paid at the bank with
    neither the return page nor the webhook reaching us. (Those of closed cycles are withdrawn
    instead, abandoned_authentications.)"""
    return list(
        Charge.objects.filter(purpose=Charge.Purpose.RENEWAL, renewal__isnull=False)
        .filter(Q(status=Charge.Status.PENDING) | Q(status=Charge.Status.REQUIRES_ACTION, renewal__status__in=Renewal.OPEN))
        .filter(_due_to_check(now))
        .order_by(F("next_check_at").asc(nulls_first=True), "sent_at", "id")
        .values_list("id", flat=True)[: limit or _claim_batch_size()]
    )


def _check_again_later(*, charge: Charge, now: datetime) -> None:
    """Still pending at the processor: the next look-up by the charge's payment type."""
    Charge.objects.filter(pk=charge.pk, status=Charge.Status.PENDING).update(
        next_check_at=now + _check_interval(_payment_method_type(charge.payment_method_id))
    )


def alert_stuck_charges(*, now: datetime, limit: int | None = None) -> list[int]:
    """No renewal stays `charging` on an attempt past a bound without an operator hearing of it:
    a pending attempt whose look-up is overdue, or older than any settlement. One alert per line."""
    stuck = (
        Charge.objects.filter(purpose=Charge.Purpose.RENEWAL, renewal__isnull=False, status=Charge.Status.PENDING)
        .filter(Q(next_check_at__lt=now - _stuck_alert_after()) | Q(sent_at__lt=now - _longest_settlement()))
        .select_related("renewal__line").order_by("next_check_at", "id")[: limit or _claim_batch_size()]
    )
    alerted = []
    for charge in stuck:
        raise_alert(kind=Alert.Kind.UNRECONCILED_CHARGE, line=charge.renewal.line, renewal=charge.renewal, now=now,
                    message=f"charge {charge.pk} of renewal {charge.renewal_id} pending since {charge.sent_at:%Y-%m-%d %H:%M} UTC: outcome not known")
        alerted.append(charge.pk)
    return alerted


# A reconciliation handed to a worker is not handed out again for this long (a Redis key, not
# state: losing it only means a charge is looked up twice, and recording an outcome is idempotent).
RECONCILE_LEASE_SECONDS = 120


def enqueue_reconciliations(*, charge_ids: list[int]) -> list[int]:
    """Hand each stale charge to a worker (renewals.reconcile_charge), so the tick's claim is not
    held up by processor look-ups; a charge already handed out within the lease is skipped."""
    from django.core.cache import cache

    from .tasks import delay_each, reconcile_charge_task

    leased = []
    for charge_id in charge_ids:
        try:
            if not cache.add(f"renewals:reconcile:{charge_id}", 1, timeout=RECONCILE_LEASE_SECONDS):
                continue
        except Exception:  # the cache is Redis too: without it, hand the charge out anyway
            logger.warning("reconcile_lease_unavailable charge=%s", charge_id)
        leased.append(charge_id)
    return delay_each(reconcile_charge_task, leased, event="reconcile_enqueue_failed", field="charge")


def reconcile_charge(*, charge_id: int, now: datetime) -> Renewal | None:
    """An attempt whose outcome we never recorded (a worker killed between the processor's answer
    and our commit, a time-out): look its PaymentIntent up and record what really happened. Never
    sends it again; an attempt the processor never saw is closed as not sent, and the renewal
    retries on the policy as a new attempt with a new key. None: still unknown, ask next tick."""
    from payments import gateways

    charge = Charge.objects.select_related("user", "renewal").get(pk=charge_id)
    if charge.status == Charge.Status.REQUIRES_ACTION and Charge.objects.filter(_abandoned(now), pk=charge.pk).exists():
        return withdraw_authentication(charge_id=charge.pk, now=now)
    if charge.status == Charge.Status.REQUIRES_ACTION:
        return _check_authentication(charge=charge, now=now)
    if charge.status != Charge.Status.PENDING:
        # Settled since it was found stale (by the attempt's own task, a webhook, a twin task).
        logger.info("charge_reconcile_skipped charge=%s status=%s", charge.pk, charge.status)
        return None
    intent = gateways.find_payment_intent_for_charge(charge)  # GatewayError: Stripe unreachable, ask later
    if intent is None:
        outcome: Any = Outcome(kind=NOT_SENT, failure_code="not_sent", failure_message="The payment processor never received this attempt.")
    else:
        outcome = gateways.outcome_from_payment_intent(intent)
        if _kind(outcome) in (PENDING, PROCESSOR_ERROR):
            logger.info("charge_reconcile_pending charge=%s payment_intent=%s status=%s", charge.pk,
                        outcome.payment_intent_id, getattr(outcome, "payment_intent_status", ""))
            _check_again_later(charge=charge, now=now)
            if _kind(outcome) == PROCESSOR_ERROR and charge.renewal_id:
                renewal = Renewal.objects.get(pk=charge.renewal_id)
                raise_alert(kind=Alert.Kind.UNRECONCILED_CHARGE, line=renewal.line, renewal=renewal, now=now,
                            message=f"charge {charge.pk}: PaymentIntent {outcome.payment_intent_id} in an unexpected state")
            return None
    logger.warning("charge_reconciled charge=%s renewal=%s kind=%s", charge.pk, charge.renewal_id, _kind(outcome))
    return record_charge_outcome(charge_id=charge.pk, outcome=outcome, now=now)


def _check_authentication(*, charge: Charge, now: datetime) -> Renewal | None:
    """A charge waiting for 3-D Secure, looked up on its own schedule: a success the customer
    completed at the bank is recorded through the one outcome path (idempotent, whoever records it
    first); anything else leaves it waiting, checked again later. The end of the authentication
    window withdraws it (_withdraw_overdue_authentications), a new attempt or pay-now too."""
    from payments import gateways

    intent = gateways.find_payment_intent_for_charge(charge)  # GatewayError: Stripe unreachable, ask later
    outcome = gateways.outcome_from_payment_intent(intent) if intent is not None else None
    if outcome is None or _kind(outcome) != SUCCEEDED:
        Charge.objects.filter(pk=charge.pk, status=Charge.Status.REQUIRES_ACTION).update(
            next_check_at=next_authentication_check(sent_at=charge.sent_at, now=now, cap=_reconcile_after()))
        return None
    logger.warning("authentication_reconciled charge=%s renewal=%s payment_intent=%s", charge.pk, charge.renewal_id,
                   outcome.payment_intent_id)
    return record_charge_outcome(charge_id=charge.pk, outcome=outcome, now=now)


@dataclass
class Outcome:
    kind: str
    payment_intent_id: str = ""
    failure_code: str = ""
    failure_message: str = ""
    payment_method_summary: str = ""


def release_unsent_attempt(*, charge_id: int, now: datetime, previous: Renewal | None = None) -> Renewal:
    """Give back an attempt that our processor write limiter refused before sending it (a THROTTLED
    outcome). Nothing reached the processor: nothing to reconcile and no decline to count, so the
    pending charge row goes and the attempt count is restored. An off-session attempt waits for the
    next claim (the rule re-checked then); a customer's pay-now returns to `previous`, the renewal
    as read before start_pay_now took it."""
    renewal_id = Charge.objects.filter(pk=charge_id).values_list("renewal_id", flat=True).get()
    with transaction.atomic():
        _rule, renewal = _lock_rule_and_renewal(renewal_id)
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        if charge.status != Charge.Status.PENDING or charge.payment_intent_id or (
                renewal.status != Renewal.Status.CHARGING and not charge.on_session):
            _log("release_ignored", renewal, charge=charge.pk, charge_status=charge.status)
            return renewal
        charge.delete()
        if charge.on_session:  # the customer's pay-now: the renewal was never touched
            _log("pay_now_released", renewal, charge=charge_id, reason="processor_busy")
            return renewal
        renewal.attempts = charge.attempt - 1
        if previous is not None:
            renewal.status, renewal.next_attempt_at, renewal.completed_at = previous.status, previous.next_attempt_at, previous.completed_at
        else:
            renewal.status = Renewal.Status.RETRY_SCHEDULED if renewal.failures else Renewal.Status.DUE
            renewal.next_attempt_at = now
        renewal.save()
        _log("renewal_attempt_released", renewal, charge=charge_id, reason="processor_busy", next_attempt_at=renewal.next_attempt_at)
    return renewal


# --- pay now (the payments app's on-session flow) -------------------------------------------

def _is_latest(renewal: Renewal) -> bool:
    latest = Renewal.objects.filter(line_id=renewal.line_id).order_by("-created_at", "-id").values_list("pk", flat=True).first()
    return latest == renewal.pk


PAYABLE = (Renewal.Status.RETRY_SCHEDULED, Renewal.Status.AWAITING_METHOD, Renewal.Status.REQUIRES_ACTION, Renewal.Status.FAILED)


def start_pay_now(*, renewal_id: int, payment_method_id: str, now: datetime, payment_method_summary: str = "") -> Charge:
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
            raise RenewalNotPayable(LINE_TERMINATED)  # it would only be refunded (precedence)
        line = renewal.line
        charge = Charge.objects.create(
            user_id=line.owner_id, line=line, package=renewal.package, renewal=renewal, attempt=None, on_session=True,
            purpose=Charge.Purpose.RENEWAL, amount_minor=renewal.amount_minor, currency=renewal.currency, status=Charge.Status.PENDING,
            idempotency_key=f"renewal-{renewal.pk}-pay-now-{uuid.uuid4().hex}",
            payment_method_id=payment_method_id, payment_method_summary=payment_method_summary[:100], sent_at=now,
        )
        _log("pay_now_started", renewal, charge=charge.pk)
    return charge


# --- the customer's actions ------------------------------------------------------------------

def save_rule(*, line: Line, values: dict[str, Any], now: datetime) -> RenewalRule:
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
        logger.info("renewal_rule_saved rule=%s line=%s enabled=%s package=%s", rule.pk, line.pk, rule.enabled, rule.package_id)
        waiting = _authentications_of(_cancel_unsent(rule=rule, now=now)) if not rule.enabled else []
    withdraw_authentications(charge_ids=waiting, now=now)
    if rule.enabled:
        evaluate_triggers(line_ids=[line.pk], now=now)
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
    """Turn auto-renewal off at once (invariant 3): under the rule's lock, every renewal of the
    line not yet sent to the processor is cancelled, and one waiting for 3-D Secure has its
    PaymentIntent cancelled at the processor, so the customer's later confirmation charges nothing."""
    with transaction.atomic():
        rule = RenewalRule.objects.select_for_update().get(pk=rule.pk)
        rule.enabled = False
        rule.save(update_fields=["enabled", "updated_at"])
        logger.info("renewal_rule_turned_off rule=%s line=%s", rule.pk, rule.line_id)
        cancelled = _cancel_unsent(rule=rule, now=now)
        waiting = _authentications_of(cancelled)
    withdraw_authentications(charge_ids=waiting, now=now)
    return cancelled


# Cycles that ended without a payment: an intent of theirs still open at the processor is withdrawn.
CLOSED_WITHOUT_PAYMENT = (Renewal.Status.CANCELLED, Renewal.Status.FAILED)
# ... and cycles another charge paid: no second intent of theirs may take money (invariant 1).
CLOSED = (*CLOSED_WITHOUT_PAYMENT, Renewal.Status.SUCCEEDED)


def _authentications_of(renewals: list[Renewal]) -> list[int]:
    """The charges of these (just cancelled) renewals still waiting for the customer's 3-D Secure."""
    if not renewals:
        return []
    return list(Charge.objects.filter(renewal__in=renewals, status=Charge.Status.REQUIRES_ACTION).values_list("id", flat=True))


def _abandoned(now: datetime) -> Q:
    """Charges whose 3-D Secure intent nobody should complete any more: those of a cancelled, failed or
    paid cycle. Not the customer's own pay-now on a failed cycle that is still the line's latest: that
    is their live payment (docs/money.md), withdrawn only once the policy's authentication time has
    passed, as the off-session one is."""
    newer = Renewal.objects.filter(line_id=OuterRef("renewal__line_id")).filter(
        Q(created_at__gt=OuterRef("renewal__created_at")) | Q(created_at=OuterRef("renewal__created_at"), id__gt=OuterRef("renewal_id")))
    live_pay_now = (Q(on_session=True, renewal__status=Renewal.Status.FAILED, sent_at__gt=now - timedelta(hours=RetryPolicy.current().authentication_hours))
                    & ~Exists(newer))
    return Q(status=Charge.Status.REQUIRES_ACTION, renewal__status__in=CLOSED) & ~live_pay_now


def abandoned_authentications(*, limit: int, now: datetime | None = None) -> list[int]:
    """Intents left open on cancelled renewals (the processor did not answer when they were
    withdrawn), on failed ones (failed before 3-D Secure timeouts withdrew first), or on renewals
    another charge paid (a late success): the dispatcher withdraws them again, so no old link can pay
    next to a later attempt. A live pay-now is left to the customer (`_abandoned`)."""
    from django.utils import timezone

    return list(
        Charge.objects.filter(_abandoned(now or timezone.now()))
        .order_by("id").values_list("id", flat=True)[:limit]
    )


def withdraw_authentications(*, charge_ids: list[int], now: datetime) -> None:
    from payments.gateways import GatewayError

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
    from payments import gateways

    charge = Charge.objects.get(pk=charge_id)
    if charge.status != Charge.Status.REQUIRES_ACTION or not charge.payment_intent_id:
        return None
    gateways.cancel_payment_intent(charge.payment_intent_id)  # refused (and logged) once paid
    outcome = gateways.outcome_from_payment_intent(gateways.retrieve_payment_intent(charge.payment_intent_id))
    if _kind(outcome) in (AUTHENTICATION_REQUIRED, PENDING, PROCESSOR_ERROR):
        logger.warning("authentication_not_withdrawn charge=%s payment_intent=%s status=%s", charge.pk,
                       charge.payment_intent_id, outcome.payment_intent_status)
        return None
    logger.info("authentication_withdrawn charge=%s renewal=%s payment_intent=%s kind=%s", charge.pk, charge.renewal_id,
                charge.payment_intent_id, _kind(outcome))
    return record_charge_outcome(charge_id=charge.pk, outcome=outcome, now=now)


def payment_method_changed(*, user, now: datetime, payment_method_id: str = "") -> list[int]:
    """The customer set a new default method (the payments app calls this): each renewal of theirs
    waiting for a method, or whose cycle failed, gets one immediate attempt; a line whose trigger
    is met and has no renewal starts one (DESIGN.md: hard declines). One method earns a cycle one
    attempt: a cycle that already charged `payment_method_id` is not woken again by it, so
    switching the default back and forth cannot retry a failed renewal at will."""
    woken: list[int] = []
    with transaction.atomic():
        for rule in RenewalRule.objects.select_for_update(of=("self",)).filter(line__owner=user, enabled=True).select_related("line", "package").order_by("id"):
            latest = Renewal.objects.select_for_update().filter(line_id=rule.line_id).order_by("-created_at", "-id").first()
            if (latest is not None and latest.status in (Renewal.Status.AWAITING_METHOD, Renewal.Status.FAILED) and payment_method_id
                    and latest.charges.filter(payment_method_id=payment_method_id).exists()):
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
                trigger = trigger_met(rule=rule, line=rule.line, now=now)
                if trigger:
                    opened = open_renewal(rule=rule, now=now, trigger=trigger, after_method_change=True)
                    if opened is not None:
                        woken.append(opened.pk)
        if woken:
            transaction.on_commit(lambda: dispatch_now(renewal_ids=woken, now=now))
    return woken


# --- the operator's actions (admin) ----------------------------------------------------------

def retry_now(*, renewal_id: int, now: datetime) -> bool:
    """Operator: bring a scheduled retry, or a renewal waiting for a method, forward to now; a
    failed cycle (the line's latest) gets one more attempt, as a new default method gives it. The
    next dispatcher tick claims it; an attempt in flight is never doubled."""
    with transaction.atomic():
        _rule, renewal = _lock_rule_and_renewal(renewal_id)
        retryable = (Renewal.Status.RETRY_SCHEDULED, Renewal.Status.AWAITING_METHOD, Renewal.Status.DUE, Renewal.Status.FAILED)
        if renewal.status not in retryable:
            return False
        if renewal.status == Renewal.Status.FAILED:
            latest = Renewal.objects.filter(line_id=renewal.line_id).order_by("-created_at", "-id").values_list("pk", flat=True).first()
            if latest != renewal.pk:
                return False  # a newer cycle of the line supersedes this one
        previous = renewal.status
        renewal.status = Renewal.Status.DUE
        renewal.next_attempt_at = now
        renewal.completed_at = None
        try:
            with transaction.atomic():
                renewal.save()
        except IntegrityError:  # the line has another open renewal (invariant 2): that one goes on
            return False
        _log("renewal_due", renewal, previous=previous, reason="operator_retry_now")
    return True


def cancel_renewal(*, renewal_id: int, now: datetime, reason: str = "operator") -> bool:
    """Operator: cancel an open renewal not yet at the processor."""
    with transaction.atomic():
        _rule, renewal = _lock_rule_and_renewal(renewal_id)
        if renewal.status not in Renewal.OPEN:
            return False
        if renewal.attempt_in_flight:
            return False
        _cancel(renewal, now=now, reason=reason)
        waiting = _authentications_of([renewal])
    withdraw_authentications(charge_ids=waiting, now=now)
    return True


# --- the dispatcher --------------------------------------------------------------------------

@dataclass
class DispatchReport:
    opened: list[int] = field(default_factory=list)
    claimed: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    reconciled: list[int] = field(default_factory=list)
    # Stale charges handed to workers (enqueue=True); their outcome is recorded by the task.
    reconciling: list[int] = field(default_factory=list)
    suspended: list[int] = field(default_factory=list)
    emails_enqueued: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"opened={len(self.opened)} claimed={len(self.claimed)} requeued={len(self.requeued)} "
            f"reconciled={len(self.reconciled)} reconciling={len(self.reconciling)} suspended={len(self.suspended)} "
            f"emails_enqueued={len(self.emails_enqueued)}"
        )


def run_dispatcher(*, now: datetime, enqueue: bool = True) -> DispatchReport:
    """One beat tick: the trigger sweep (safety net and expiry triggers), suspension after grace,
    reconciliation of unknown outcomes, and the claim of due work. With enqueue=False the caller
    runs the charge step itself (`renewals_tick`), reconciliation included."""
    report = DispatchReport()
    # Opened renewals are left due: the claim below takes them with the rest of the batch.
    opened = evaluate_triggers(line_ids=lines_with_enabled_rules_ids(now=now), now=now, dispatch=False)
    report.opened = [renewal.pk for renewal in opened]
    report.suspended = suspend_overdue_lines(now=now)
    cancel_renewals_of_terminated_lines(now=now)
    turn_off_rules_of_given_lines(now=now)
    alert_stuck_charges(now=now)
    stale = stale_pending_charges(now=now, limit=_reconcile_per_tick())
    stale += abandoned_authentications(limit=max(_reconcile_per_tick() - len(stale), 0), now=now)
    if enqueue:
        # Each look-up is a processor round trip (a list of intents against localstripe): in
        # parallel on the workers, and never between this tick and its claim.
        report.reconciling = enqueue_reconciliations(charge_ids=stale)
    else:
        for charge_id in stale:
            try:
                if reconcile_charge(charge_id=charge_id, now=now) is not None:
                    report.reconciled.append(charge_id)
            except Exception:
                logger.exception("charge_reconcile_error charge=%s", charge_id)
    report.requeued = requeue_lost_claims(now=now)
    report.claimed = claim_due_renewals(now=now)
    if enqueue:
        _enqueue_charges(report.requeued + report.claimed)
        # The safety net behind each email's own task: one whose message Redis lost goes out now.
        report.emails_enqueued = notifications.unsent_notice_ids(older_than=now - NOTICE_SWEEP_AFTER)
        notifications.enqueue_notices(report.emails_enqueued)
    heartbeats.beat(heartbeats.DISPATCHER, now=now)
    logger.info("renewals_dispatched %s", report)
    return report

