"""Errors reach Sentry when SENTRY_DSN is set, with personal data masked. The Sentry server is a
stand-in at the edge: a local HTTP server that keeps the envelopes the real SDK posts to it."""

import gzip
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = pytest.mark.pure

CHILD = """
import logging
import django
django.setup()
import sentry_sdk
logging.getLogger("renewals.services.charging").error(
    "charge_failed renewal=7 customer=ann@example.com phone=+8613800138000 card=4242 4242 4242 4242"
)
try:
    raise ValueError("declined for ann@example.com, card 4000000000000002, phone +44 7700 900123")
except ValueError:
    sentry_sdk.capture_exception()
sentry_sdk.flush(timeout=30)
"""


class SentryStandIn(BaseHTTPRequestHandler):
    envelopes: list[bytes] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "br":
            import brotli

            body = brotli.decompress(body)
        self.envelopes.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def events(envelopes: list[bytes]) -> list[dict]:
    found = []
    for envelope in envelopes:
        lines = envelope.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                found.append(json.loads(payload))
    return found


def test_an_error_reaches_sentry_with_email_phone_and_card_masked():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SentryStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "esimsite.settings.test",
            "SENTRY_DSN": f"http://publickey@127.0.0.1:{server.server_address[1]}/1",
        }
        done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    finally:
        server.shutdown()
    received = events(SentryStandIn.envelopes)
    assert len(received) == 2, received
    text = json.dumps(received, ensure_ascii=False)
    assert "charge_failed renewal=7" in text and "declined for" in text
    for personal in ("ann@example.com", "8613800138000", "4242 4242 4242 4242", "4000000000000002", "7700 900123"):
        assert personal not in text
    assert "[email]" in text and "[card]" in text and "•••23" in text
    assert all("user" not in event or "ip_address" not in event["user"] for event in received)
