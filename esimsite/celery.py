"""The Celery app. State lives in the database; Celery only executes (docs/invariants.md #4)."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "esimsite.settings.local")

app = Celery("esimsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_process_shutdown.connect
def _forget_metrics_of_this_process(pid=None, **kwargs):
    """Prometheus's multiprocess mode (docs/operations-metrics.md): a pool process that ends takes
    its live gauges with it; its counters stay in the shared directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
