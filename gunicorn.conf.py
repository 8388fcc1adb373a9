"""gunicorn's configuration for the production `web` process (Procfile.production), from the
environment: the defaults suit a small machine behind nginx (docs/deploying.md)."""

import os

# Where gunicorn listens: a loopback port behind the proxy, or GUNICORN_BIND=unix:/run/x.sock.
bind = os.environ.get("GUNICORN_BIND") or f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A request (a charge waits up to STRIPE_HTTP_TIMEOUT_SECONDS at the processor) past this is killed.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
# Recycle workers now and then (slow leaks), jittered so they do not restart together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "1000"))
max_requests_jitter = max_requests // 10
# The proxy in front sets X-Forwarded-For/Proto; gunicorn trusts it only from these addresses.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"

# Prometheus's multiprocess mode (docs/operations-metrics.md): every worker writes its counters as
# files in this directory, which must exist, be empty when the processes start (a tmpfs or systemd's
# RuntimeDirectory=) and be shared with the Celery worker on this machine. /metrics adds them up.
prometheus_multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def child_exit(server, worker):
    """A gunicorn worker is gone: its live gauges go with it (its counters stay counted)."""
    if prometheus_multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
