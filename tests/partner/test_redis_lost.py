"""Redis lost: the partner API still answers 200, and the outbox rows written meanwhile are
delivered by the next sweep. The process with the dead broker is a real subprocess whose
CELERY_BROKER_URL points at a closed port (nothing of ours is patched)."""

import json
import os
import socket
import subprocess
import sys

import pytest
from django.db import connection

from accounts.models import Line, NetworkCommand, UsageRecord
from partner.tasks import deliver_network_commands
from renewals.models import Renewal, RenewalRule
from tests.builders import MB, make_line
from tests.partner.helpers import Receiver, record

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = """
import json, sys
import django
django.setup()
from django.conf import settings
from django.test import Client
from django.utils import timezone
from partner import signature as partner_signature
settings.ALLOWED_HOSTS = ["testserver"]
raw = sys.stdin.buffer.read()
import time
started = time.monotonic()
header = partner_signature.sign(secret=settings.PARTNER_USAGE_SECRET, body=raw, now=timezone.now())
response = Client(raise_request_exception=False).post(
    "/api/partner/usage", data=raw, content_type="application/json", headers={"X-Signature": header})
print(json.dumps({"status": response.status_code, "body": response.content.decode(), "seconds": round(time.monotonic() - started, 2)}))
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_usage_batch_with_redis_down_is_applied_and_its_block_command_delivered_by_the_sweep(
    customer, package, settings
):
    line = make_line(owner=customer, package=package, data_remaining_bytes=MB, data_used_bytes=0)
    RenewalRule.objects.create(line=line, package=package, enabled=True, trigger_data_below_mb=500)
    db = connection.settings_dict
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "esimsite.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": dead,
        "REDIS_URL": dead,
    }
    body = json.dumps({"records": [record(line, id="while-redis-down", bytes=2 * MB)]}).encode()
    done = subprocess.run([sys.executable, "-c", SCRIPT], input=body, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert (answer["status"], json.loads(answer["body"])) == (200, {"accepted": 1, "duplicates": 0}), (
        done.stderr.decode()[-3000:]
    )
    assert b"network_command_kick_failed" in done.stderr

    line.refresh_from_db()
    assert (line.status, line.data_remaining_bytes) == (Line.Status.DATA_EXHAUSTED, 0)
    assert UsageRecord.objects.filter(partner_record_id="while-redis-down").exists()
    assert Renewal.objects.filter(line=line).exists()  # the engine's own sweep takes it from here
    command = NetworkCommand.objects.get(line=line)
    assert command.status == "pending"

    with Receiver() as receiver:
        settings.NETWORK_WEBHOOK_URL = receiver.url
        assert deliver_network_commands()["delivered"] == 1  # what beat runs once Redis is back
    assert [c["command"] for c in receiver.commands()] == ["block_data"]
