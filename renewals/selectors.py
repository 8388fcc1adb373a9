"""Reads of renewals shared by views, templates, tasks, the admin and the engine: each line's current
situation (the portal's banner), the
lines at a trigger (the sweep's candidates) and the caps' counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models import Count, F, Max, Q, Window
from django.db.models.expressions import RawSQL
from django.db.models.functions import RowNumber

from accounts.models import Line, User
from payments.models import Charge
from payments.selectors import payment_methods_for_user

from .models import Renewal, RenewalRule, RetryPolicy

# Lines a trigger never renews: not yet activated, gone for good, or suspended (by a failed cycle,
# which only the customer's payment or new method reopens, or by the operator, whose suspension a
# renewal must not lift behind their back).
NOT_RENEWABLE = (Line.Status.INACTIVE, Line.Status.TERMINATED, Line.Status.SUSPENDED)

# The renewal statuses a customer can settle by paying now (renewals.services.pay_now.PAYABLE).
PAYABLE_STATUSES = (
    Renewal.Status.RETRY_SCHEDULED,
    Renewal.Status.AWAITING_METHOD,
    Renewal.Status.REQUIRES_ACTION,
    Renewal.Status.FAILED,
)


def rule_for_line(line: Line) -> RenewalRule | None:
    return RenewalRule.objects.select_related("package").filter(line=line).first()


# --- a line's current situation (the portal's one banner per line, docs/pages.md) ----------------


class Severity:
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    SUCCESS = "success"


@dataclass(frozen=True)
class Situation:
    """What is true of a line now and needs the customer: `kind` picks the sentence and the one
    action (renewals/_banners.html); `renewal` or `charge` is the open item the action settles."""

    kind: str
    severity: str
    renewal: Renewal | None = None
    charge: Charge | None = None


@dataclass(frozen=True)
class LineState:
    line: Line
    situation: Situation | None
    auto_renewal: bool
    # The card the rule charges, named ("Visa •••• 4242, expires 12/30"); empty when off or none.
    renewal_method: str = ""


def situation_of(line: Line, renewal: Renewal | None, pending_charge: Charge | None) -> Situation | None:
    """The line's current situation from its status, its newest renewal and a purchase waiting
    for the bank, most urgent first. Past events (a success, a failure since made good) give none:
    they belong in the history, not in a banner."""
    status = renewal.status if renewal is not None else None
    if line.status in (Line.Status.TERMINATED, Line.Status.INACTIVE):
        return None
    if line.status == Line.Status.SUSPENDED:
        # Suspended by the renewal (paying restores it), or by the operator (only they can lift it).
        if renewal is not None and status in PAYABLE_STATUSES:
            if status != Renewal.Status.FAILED or renewal.line_suspended_at is not None:
                return Situation("suspended_unpaid", Severity.ERROR, renewal=renewal)
        return Situation("suspended", Severity.ERROR)
    if status == Renewal.Status.REQUIRES_ACTION:
        return Situation("needs_authentication", Severity.WARNING, renewal=renewal)
    if status == Renewal.Status.AWAITING_METHOD:
        return Situation("needs_method", Severity.WARNING, renewal=renewal)
    if status == Renewal.Status.RETRY_SCHEDULED:
        return Situation("retry_scheduled", Severity.WARNING, renewal=renewal)
    if status == Renewal.Status.FAILED and line.status != Line.Status.ACTIVE:
        return Situation("renewal_failed", Severity.ERROR, renewal=renewal)
    if pending_charge is not None:
        return Situation("purchase_needs_authentication", Severity.WARNING, charge=pending_charge)
    if status in (Renewal.Status.DUE, Renewal.Status.CHARGING):
        return Situation("renewing", Severity.INFO, renewal=renewal)
    if line.status == Line.Status.DATA_EXHAUSTED:
        return Situation("out_of_data", Severity.ERROR)
    if line.status == Line.Status.EXPIRED:
        return Situation("expired", Severity.ERROR)
    return None


def line_states_for_user(
    user: User | AnonymousUser | None, *, line: Line | None = None, lines: list[Line] | None = None
) -> dict[int, LineState]:
    """Each of the user's lines (or one) with its current situation and its auto-renewal, by line
    id. A fixed number of queries whatever the number of lines. A page that has already read the
    lines passes them (`line`, or `lines` from accounts.selectors.lines_for_user): they are not read
    again, and any that is not the user's is left out (docs/portal-performance.md)."""
    if user is None or not user.is_authenticated:
        return {}
    if line is not None:
        lines = [line]
    if lines is None:
        lines = list(Line.objects.filter(owner=user).select_related("package"))
    lines_by_id = {each.pk: each for each in lines if each.owner_id == user.pk}
    if not lines_by_id:
        return {}
    newest = (
        Renewal.objects.filter(line_id__in=lines_by_id).values("line_id").annotate(newest=Max("id")).values("newest")
    )
    renewals = {r.line_id: r for r in Renewal.objects.filter(pk__in=newest).select_related("package")}
    pending = {
        charge.line_id: charge
        for charge in Charge.objects.filter(
            line_id__in=lines_by_id, purpose=Charge.Purpose.PURCHASE, status=Charge.Status.REQUIRES_ACTION
        ).order_by("id")
    }
    rules = {r.line_id: r for r in RenewalRule.objects.filter(line_id__in=lines_by_id, enabled=True)}
    methods = payment_methods_for_user(user) if rules else []
    default = next((m for m in methods if m.is_default), None)
    by_id = {m.id: m for m in methods}
    states = {}
    for line_id, each in lines_by_id.items():
        rule = rules.get(line_id)
        method = None
        if rule is not None:
            method = by_id.get(rule.payment_method_id) if rule.payment_method_id else default
        states[line_id] = LineState(
            line=each,
            situation=situation_of(each, renewals.get(line_id), pending.get(line_id)),
            auto_renewal=rule is not None,
            renewal_method=method.described() if method is not None else "",
        )
    return states


def hard_decline_codes() -> set[str]:
    """The decline codes the operator's retry policy never retries on the same method (payments'
    gateway asks through payments.hooks)."""
    return set(RetryPolicy.current().hard_decline_codes or [])


def lines_at_a_trigger(*, now: datetime, line_ids: list[int] | None = None) -> list[int]:
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
    if line_ids is not None and connection.vendor == "postgresql":
        # One array parameter, not one placeholder per line: a usage batch passes a thousand ids,
        # and the driver splitting a 1,000-placeholder statement was a third of the batch's time
        # (docs/usage.md, "The ingest path").
        lines = lines.filter(pk__in=RawSQL("SELECT unnest(%s::bigint[])", [list(line_ids)]))
    elif line_ids is not None:
        lines = lines.filter(pk__in=line_ids)
    return list(lines.order_by().values_list("pk", flat=True))


def lines_with_enabled_rules_ids(*, now: datetime) -> list[int]:
    """The beat sweep's candidates: lines whose enabled rule's data trigger is met or whose validity
    ends within the widest expiry window, without an open renewal (`trigger_met` decides precisely)."""
    return lines_at_a_trigger(now=now)


def month_start(now: datetime, time_zone: str = "UTC") -> datetime:
    """Midnight on the first of `now`'s month in `time_zone` (the customer's month, not UTC's: a
    Shanghai customer's 1 December starts at 16:00 UTC on 30 November)."""
    try:
        zone = ZoneInfo(time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return now.astimezone(zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def renewals_in_last_day(*, line_ids: list[int], now: datetime) -> dict[int, int]:
    """Renewals each line completed successfully in the 24 hours before `now` (the daily cap's
    count), for many lines in one grouped query; a line with none is absent."""
    rows = (
        Renewal.objects.filter(
            line_id__in=line_ids, status=Renewal.Status.SUCCEEDED, completed_at__gt=now - timedelta(hours=24)
        )
        .order_by()
        .values_list("line_id")
        .annotate(n=Count("id"))
    )
    return dict(rows)


def spent_this_month(*, line_ids: list[int], now: datetime) -> dict[tuple[int, str], int]:
    """Money taken by each line's renewals since the first of its owner's month (in their time
    zone), net of refunds, per (line, currency): a cap is in one currency, so other currencies never
    add to it. One query for many lines: the rows since the earliest month start any zone can have
    (a day before UTC's), each kept or not by its own owner's month start."""
    since = month_start(now) - timedelta(days=1)
    rows = (
        Charge.objects.filter(renewal__line_id__in=line_ids, status__in=Charge.MONEY_TAKEN, settled_at__gte=since)
        .order_by()
        .values_list(
            "renewal__line_id",
            "renewal__line__owner__time_zone",
            "currency",
            "settled_at",
            F("amount_minor") - F("refunded_minor"),
        )
    )
    starts: dict[str, datetime] = {}
    spent: dict[tuple[int, str], int] = {}
    for line_id, time_zone, currency, settled_at, net in rows:
        zone = time_zone or "UTC"
        if zone not in starts:
            starts[zone] = month_start(now, zone)
        if settled_at >= starts[zone]:
            spent[(line_id, currency)] = spent.get((line_id, currency), 0) + int(net)
    return spent


def latest_renewals(*, line_ids: list[int]) -> dict[int, Renewal]:
    """Each line's latest renewal (by creation), for many lines in one query (a window over the
    (line, -created_at) index); a line that never renewed is absent."""
    latest = (
        Renewal.objects.filter(line_id__in=line_ids)
        .annotate(
            position=Window(RowNumber(), partition_by=[F("line_id")], order_by=[F("created_at").desc(), F("id").desc()])
        )
        .filter(position=1)
        .only("id", "line_id", "status", "failures", "completed_at", "updated_at", "created_at")
        .order_by()
    )
    return {renewal.line_id: renewal for renewal in latest}
