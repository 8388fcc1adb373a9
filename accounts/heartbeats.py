"""Heartbeats of periodic jobs: the renewals dispatcher stamps each finished pass (from beat or
`renewals_tick` alike), read as an age by the operations page and /healthz. The partner's last
usage batch is read from the usage records."""

from datetime import datetime, timedelta

from django.utils import timezone

from .models import Heartbeat, UsageRecord

DISPATCHER = "renewals.dispatcher"


def beat(name: str, *, now: datetime | None = None) -> None:
    Heartbeat.objects.update_or_create(name=name, defaults={"at": now or timezone.now()})


def last_beat(name: str) -> datetime | None:
    return Heartbeat.objects.filter(name=name).values_list("at", flat=True).first()


def last_usage_batch() -> datetime | None:
    # The newest id, not max(received_at): one index probe per day partition instead of reading
    # every record kept (docs/usage.md, "History"); ids are handed out in arrival order.
    return UsageRecord.objects.order_by("-id").values_list("received_at", flat=True).first()


def age(moment: datetime | None, *, now: datetime) -> timedelta | None:
    return None if moment is None else max(now - moment, timedelta(0))
