"""The counters and histograms every layer increments where its event happens (docs/operations-metrics.md).
Here, in the lowest app, so that payments, renewals and partner can all reach them; the gauges that
are counts of rows (renewals by state, backlogs and their ages) are computed at scrape time by
console/metrics.py instead. Under gunicorn set PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode): each process writes its own files there and the scrape adds them up."""

from __future__ import annotations

from django.db import transaction
from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "esimsite_http_requests", "HTTP requests answered, by resolved view name", ["view", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "esimsite_http_request_duration_seconds",
    "Time to answer a request, by resolved view name",
    ["view"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CHARGE_OUTCOMES = Counter(
    "esimsite_charge_outcomes",
    "Renewal charge outcomes recorded, by kind and decline kind",
    ["outcome", "decline_kind"],
)
RETRIES_SCHEDULED = Counter("esimsite_renewal_retries_scheduled", "Declined renewal attempts given a later retry")
LINE_SUSPENSIONS = Counter("esimsite_line_suspensions", "Lines suspended, by who suspended them", ["by"])
LINE_RESTORATIONS = Counter("esimsite_line_restorations", "Suspended lines brought back, by what lifted it", ["by"])
USAGE_RECORDS = Counter("esimsite_usage_records", "Partner usage records, by what ingestion did with them", ["result"])
USAGE_PARTITIONS = Counter(
    "esimsite_usage_partitions",
    "Usage record day partitions created and dropped (and attempts that waited too long for a lock)",
    ["action"],
)
PROCESSOR_WRITES = Counter(
    "esimsite_processor_writes", "Writes to the processor through the rate limiter, by what happened", ["result"]
)
DISPATCHER_PASS_SECONDS = Histogram(
    "esimsite_dispatcher_pass_duration_seconds",
    "Time one dispatcher pass takes",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def count_on_commit(counter: Counter, amount: float = 1, **labels: str) -> None:
    """Count an event written inside a transaction only once it is committed (a rolled-back
    outcome did not happen)."""
    child = counter.labels(**labels) if labels else counter
    transaction.on_commit(lambda: child.inc(amount))
