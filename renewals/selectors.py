"""Reads of renewals shared by views, templates, tasks and the admin."""
from datetime import datetime, timedelta

from django.db.models import Max, QuerySet
from django.utils import timezone

from .models import Renewal, RenewalRule, RetryPolicy

# A success is worth a banner for this long; problems stay until they are solved.
SUCCESS_BANNER_FOR = timedelta(days=3)
BANNER_STATUSES = (
    Renewal.Status.RETRY_SCHEDULED,
    Renewal.Status.REQUIRES_ACTION,
    Renewal.Status.AWAITING_METHOD,
    Renewal.Status.FAILED,
    Renewal.Status.SUCCEEDED,
)


def rule_for_line(line) -> RenewalRule | None:
    return RenewalRule.objects.select_related("package").filter(line=line).first()


def latest_renewals_for_user(user, *, line=None) -> QuerySet[Renewal]:
    """The newest renewal of each of the user's lines (or of one line)."""
    mine = Renewal.objects.filter(line__owner=user)
    if line is not None:
        mine = mine.filter(line=line)
    newest = mine.values("line_id").annotate(newest=Max("id")).values("newest")
    return Renewal.objects.filter(pk__in=newest).select_related("line", "package").order_by("line_id")


def banners_for_user(user, *, line=None, now: datetime | None = None) -> list[Renewal]:
    if user is None or not user.is_authenticated:
        return []
    now = now or timezone.now()
    banners = []
    for renewal in latest_renewals_for_user(user, line=line):
        if renewal.status not in BANNER_STATUSES:
            continue
        if renewal.status == Renewal.Status.SUCCEEDED and (renewal.completed_at is None or renewal.completed_at < now - SUCCESS_BANNER_FOR):
            continue
        banners.append(renewal)
    return banners


def hard_decline_codes() -> set[str]:
    """The decline codes the operator's retry policy never retries on the same method (payments'
    gateway asks through payments.hooks)."""
    return set(RetryPolicy.current().hard_decline_codes or [])
