"""GET /metrics: Prometheus's text format for the scraper, behind a bearer token (METRICS_TOKEN;
without one the endpoint does not exist). The counters are incremented where their events happen
(accounts/metrics.py); the gauges below are counts of rows, computed at each scrape so that every
web process reports the same truth (docs/operations-metrics.md)."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from accounts import heartbeats
from accounts.models import NetworkCommand
from payments.models import Charge
from renewals.models import Renewal


class EngineCollector(Collector):
    """Renewals by state; the reconciliation and outbox backlogs and their oldest item's age; the
    dispatcher's lag (time since its last completed pass)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        by_state = GaugeMetricFamily("esimsite_renewals", "Renewals in each state", labels=["state"])
        counts = dict(Renewal.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
        for state in Renewal.Status.values:
            by_state.add_metric([state], counts.get(state, 0))
        yield by_state

        for name, what, queryset, field in (
            (
                "reconciliation",
                "Renewal attempts sent whose outcome is not known yet",
                Charge.objects.filter(purpose=Charge.Purpose.RENEWAL, status=Charge.Status.PENDING),
                "created_at",
            ),
            (
                "outbox",
                "Network commands not delivered yet",
                NetworkCommand.objects.filter(status=NetworkCommand.Status.PENDING),
                "created_at",
            ),
        ):
            backlog = queryset.aggregate(n=Count("pk"), oldest=Min(field))
            yield GaugeMetricFamily(f"esimsite_{name}_backlog", what, value=backlog["n"])
            age = (now - backlog["oldest"]).total_seconds() if backlog["oldest"] else 0.0
            yield GaugeMetricFamily(
                f"esimsite_{name}_oldest_age_seconds", f"Age of the oldest: {what.lower()}", value=age
            )

        last = heartbeats.last_beat(heartbeats.DISPATCHER)
        lag = GaugeMetricFamily(
            "esimsite_dispatcher_lag_seconds", "Seconds since the dispatcher's last completed pass (NaN: never)"
        )
        lag.add_metric([], (now - last).total_seconds() if last else float("nan"))
        yield lag


def _authorised(request) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    return given.startswith("Bearer ") and hmac.compare_digest(given[len("Bearer ") :].encode(), token.encode())


@never_cache
@require_GET
def metrics(request):
    if not settings.METRICS_TOKEN:
        raise Http404
    if not _authorised(request):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    engine = CollectorRegistry(auto_describe=False)
    engine.register(EngineCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every gunicorn worker and Celery process on this machine wrote its counters there.
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
        body = generate_latest(processes)
    else:
        body = generate_latest(REGISTRY)
    return HttpResponse(body + generate_latest(engine), content_type="text/plain; version=0.0.4; charset=utf-8")
