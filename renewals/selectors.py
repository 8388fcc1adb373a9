"""Reads of renewals shared by views, templates, tasks, the admin and the engine: the banners, the
lines at a trigger (the sweep's candidates) and the caps' counts."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib.auth.models import AnonymousUser
from django.db.models import F, Max, Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import Line, User
from payments.models import Charge

from .models import Renewal, RenewalRule, RetryPolicy

# Lines a trigger never renews: not yet activated, gone for good, or suspended (by a failed cycle,
# which only the customer's payment or new method reopens, or by the operator, whose suspension a
# renewal must not lift behind their back).
NOT_RENEWABLE = (Line.Status.INACTIVE, Line.Status.TERMINATED, Line.Status.SUSPENDED)

# A success is worth a banner for this long; problems stay until they are solved.
SUCCESS_BANNER_FOR = timedelta(days=3)
BANNER_STATUSES = (
    Renewal.Status.RETRY_SCHEDULED,
    Renewal.Status.REQUIRES_ACTION,
    Renewal.Status.AWAITING_METHOD,
    Renewal.Status.FAILED,
    Renewal.Status.SUCCEEDED,
)


def rule_for_line(line: Line) -> RenewalRule | None:
    return RenewalRule.objects.select_related("package").filter(line=line).first()


def latest_renewals_for_user(user: User, *, line: Line | None = None) -> QuerySet[Renewal]:
    """The newest renewal of each of the user's lines (or of one line)."""
    mine = Renewal.objects.filter(line__owner=user)
    if line is not None:
        mine = mine.filter(line=line)
    newest = mine.values("line_id").annotate(newest=Max("id")).values("newest")
    return Renewal.objects.filter(pk__in=newest).select_related("line", "package").order_by("line_id")


def banners_for_user(
    user: User | AnonymousUser | None, *, line: Line | None = None, now: datetime | None = None
) -> list[Renewal]:
    if user is None or not user.is_authenticated:
        return []
    now = now or timezone.now()
    banners = []
    for renewal in latest_renewals_for_user(user, line=line):
        if renewal.status not in BANNER_STATUSES:
            continue
        if renewal.status == Renewal.Status.SUCCEEDED and (
            renewal.completed_at is None or renewal.completed_at < now - SUCCESS_BANNER_FOR
        ):
            continue
        banners.append(renewal)
    return banners


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
    if line_ids is not None:
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


def renewals_in_last_day(*, line: Line, now: datetime) -> int:
    return Renewal.objects.filter(
        line=line, status=Renewal.Status.SUCCEEDED, completed_at__gt=now - timedelta(hours=24)
    ).count()


def spent_this_month(*, line: Line, now: datetime, currency: str) -> int:
    """Money taken in `currency` by this line's renewals since the first of the owner's month (in
    their time zone), net of refunds. A cap is in one currency: other currencies never add to it."""
    time_zone = line.owner.time_zone if line.owner is not None else "UTC"
    total = Charge.objects.filter(
        renewal__line=line,
        status__in=Charge.MONEY_TAKEN,
        currency=currency,
        settled_at__gte=month_start(now, time_zone),
    ).aggregate(total=Sum(F("amount_minor") - F("refunded_minor")))["total"]
    return int(total or 0)
