"""What a test needs to talk to the partner API like the partner, and to be the partner's
command endpoint: signed requests, and a real HTTP receiver on 127.0.0.1 (the edge we fake)."""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.conf import settings
from django.utils import timezone

from partner import signature as partner_signature

USAGE_URL = "/api/partner/usage"
# The day the tests' usage starts on: three days ago, so always inside the dedup window
# (settings.USAGE_DEDUP_WINDOW; older records are refused, docs/usage.md "History").
USAGE_DAY = (timezone.now() - timedelta(days=3)).date()
DAY = USAGE_DAY.isoformat()
NEXT_DAY = (USAGE_DAY + timedelta(days=1)).isoformat()


def record(line, *, id: str, bytes: int, start=f"{DAY}T10:00:00Z", end=f"{DAY}T10:05:00Z", **extra) -> dict:
    return {"id": id, "iccid": line.iccid, "bytes": bytes, "start": start, "end": end, **extra}


def signed_post(client, body, *, secret=None, now=None, header=None):
    """POST raw bytes (or a JSON-able object) signed as the partner signs them."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if header is None:
        header = partner_signature.sign(
            secret=secret or settings.PARTNER_USAGE_SECRET, body=raw, now=now or timezone.now()
        )
    return client.post(USAGE_URL, data=raw, content_type="application/json", headers={"X-Signature": header})


class Receiver:
    """A real HTTP server standing in for the partner's command endpoint. `responses` is the
    list of status codes to answer with, in order; after it runs out it answers 200."""

    def __init__(self):
        self.requests: list[dict] = []
        self.responses: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    code = receiver.responses.pop(0) if receiver.responses else 200
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "code": code}
                    )
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "/elsewhere")  # answered 200 when followed
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if code < 300 else b'{"error": "partner down"}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/commands"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def commands(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]


@contextlib.contextmanager
def celery_worker(log_path, **env):
    """A real Celery worker process on the test database (for django_db(transaction=True) tests)."""
    from django.db import connection

    db = connection.settings_dict
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "esimsite.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        **env,
    }
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "esimsite",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"accounts-test-{os.getpid()}@%h",
            ],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield worker
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def wait_until(predicate, *, timeout: float = 60.0, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
