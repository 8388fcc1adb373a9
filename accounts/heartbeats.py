"""Heartbeats of periodic jobs: the renewals dispatcher stamps each finished pass (from beat or
`renewals_tick` alike), read as an age by the operations page and /healthz. The partner's last
usage batch is read from the usage records."""

from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from .models import Heartbeat, UsageRecord

DISPATCHER = "renewals.dispatcher"


def beat(name: str, *, now: datetime | None = None) -> None:
    Heartbeat.objects.update_or_create(name=name, defaults={"at": now or timezone.now()})


def last_beat(name: str) -> datetime | None:
    return Heartbeat.objects.filter(name=name).values_list("at", flat=True).first()


def last_usage_batch() -> datetime | None:
    return UsageRecord.objects.aggregate(last=Max("received_at"))["last"]


def age(moment: datetime | None, *, now: datetime) -> timedelta | None:
    return None if moment is None else max(now - moment, timedelta(0))
