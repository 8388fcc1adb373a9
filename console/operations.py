"""Reads behind the operations page: the engine's queues, the last 24 hours' failures and
suspensions, revenue summed in SQL per currency, open alerts and the age of the periodic jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce

from accounts import heartbeats
from accounts.models import ChangeRecord, Line, NetworkCommand
from payments import processor_limit
from payments.models import Charge
from provisioning.models import Profile, ProfileOrder
from renewals.models import Alert, Renewal

DAY = timedelta(hours=24)


@dataclass
class JobAge:
    at: datetime | None
    age: timedelta | None
    stale: bool


def _job(at: datetime | None, *, now: datetime, stale_after: timedelta) -> JobAge:
    age = heartbeats.age(at, now=now)
    return JobAge(at=at, age=age, stale=age is None or age > stale_after)


def dispatcher_stale_after() -> timedelta:
    return getattr(
        settings,
        "OPERATIONS_DISPATCHER_STALE_AFTER",
        3 * getattr(settings, "RENEWALS_DISPATCH_INTERVAL", timedelta(seconds=30)) + timedelta(seconds=30),
    )


def usage_stale_after() -> timedelta:
    return getattr(settings, "OPERATIONS_USAGE_STALE_AFTER", timedelta(hours=2))


def dispatcher_job(*, now: datetime) -> JobAge:
    return _job(heartbeats.last_beat(heartbeats.DISPATCHER), now=now, stale_after=dispatcher_stale_after())


def usage_job(*, now: datetime) -> JobAge:
    return _job(heartbeats.last_usage_batch(), now=now, stale_after=usage_stale_after())


def renewal_counts(*, now: datetime) -> dict[str, int]:
    since = now - DAY
    S = Renewal.Status
    return Renewal.objects.aggregate(
        due=Count("pk", filter=Q(status=S.DUE)),
        retrying=Count("pk", filter=Q(status__in=[S.RETRY_SCHEDULED, S.AWAITING_METHOD])),
        requires_action=Count("pk", filter=Q(status=S.REQUIRES_ACTION)),
        failed_24h=Count("pk", filter=Q(status=S.FAILED, completed_at__gte=since)),
    ) | {"suspended_24h": lines_suspended_since(since)}


def lines_suspended_since(since: datetime) -> int:
    """Lines that went to suspended since then, by the engine or an operator: the history has both
    (a line's status change is recorded from its save, whoever makes it)."""
    return (
        ChangeRecord.objects.filter(
            content_type=ContentType.objects.get_for_model(Line),
            created_at__gte=since,
            after__status=Line.Status.SUSPENDED,
        )
        .values("object_id")
        .distinct()
        .count()
    )


def revenue(*, since: datetime) -> list[dict]:
    """Per currency, in integer minor units, for charges settled from `since` on: gross (what was
    taken, `charges` of them), refunds (what went back, `refunds` charges) and net = amount_minor.
    A refund counts with its charge's period (docs/console.md, "Operations page")."""
    rows = (
        Charge.objects.filter(status__in=Charge.MONEY_TAKEN)
        .annotate(settled=Coalesce("settled_at", "created_at"))
        .filter(settled__gte=since)
        .values("currency")
        .annotate(
            gross_minor=Sum("amount_minor"),
            refunds_minor=Sum("refunded_minor"),
            charges=Count("pk"),
            refunds=Count("pk", filter=Q(refunded_minor__gt=0)),
        )
        .order_by("currency")
    )
    return [
        {**row, "refunded_minor": row["refunds_minor"], "amount_minor": row["gross_minor"] - row["refunds_minor"]}
        for row in rows
    ]


def open_alerts(limit: int = 50):
    return (
        Alert.objects.filter(resolved_at__isnull=True)
        .select_related("line", "renewal")
        .order_by("-created_at", "-id")[:limit]
    )


def dead_lettered_commands(limit: int = 50):
    """Network commands the partner refused for good or that ran out of attempts: each one left
    the network out of step with the line until an operator retries it."""
    return (
        NetworkCommand.objects.filter(status=NetworkCommand.Status.FAILED)
        .select_related("line")
        .order_by("-id")[:limit]
    )


def dead_letter_count() -> int:
    return NetworkCommand.objects.filter(status=NetworkCommand.Status.FAILED).count()


def processor_writes():
    """The processor write limiter's counters (payments.processor_limit); None if its Redis is down."""
    return processor_limit.write_stats()


def day_and_month_start(now: datetime) -> tuple[datetime, datetime]:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


def failed_esim_orders(limit: int = 50):
    """eSIM orders that failed for good (refunded, customer told) and no operator has resolved."""
    return (
        ProfileOrder.objects.filter(status=ProfileOrder.Status.FAILED, alert_resolved_at__isnull=True)
        .select_related("user", "package", "charge")
        .order_by("-failed_at", "-id")[:limit]
    )


def stuck_esim_orders(*, attempts: int = 4, limit: int = 50):
    """Open eSIM orders the SM-DP+ has not answered for several attempts (still retried)."""
    return (
        ProfileOrder.objects.filter(status__in=ProfileOrder.OPEN, attempts__gte=attempts)
        .select_related("user", "package")
        .order_by("created_at", "id")[:limit]
    )


@dataclass
class PoolLevel:
    available: int
    threshold: int
    in_use: bool

    @property
    def low(self) -> bool:
        return self.in_use and self.available < self.threshold


def profile_pool() -> PoolLevel:
    """The imported ICCID pool: low when fewer than PROVISIONING_LOW_POOL profiles are left and
    the pool is what orders draw from (PROVISIONING_PROFILE_SOURCE=pool)."""
    return PoolLevel(
        available=Profile.objects.filter(status=Profile.Status.AVAILABLE).count(),
        threshold=settings.PROVISIONING_LOW_POOL,
        in_use=settings.PROVISIONING_PROFILE_SOURCE == "pool",
    )
