"""Network commands: rows in an outbox, delivered signed to a real local HTTP receiver, retried
with backoff stored on the row, in order per line, exactly once per sweep even with two sweeps."""

import json
import threading
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import NetworkCommand
from accounts.services import network
from accounts.services.network import enqueue_command
from partner import signature as partner_signature
from partner.services import outbox
from partner.services.outbox import deliver_due_commands, retry_command_now
from partner.tasks import deliver_network_commands
from tests.builders import make_line
from tests.partner.helpers import Receiver, celery_worker, wait_until


@pytest.fixture
def receiver(settings):
    with Receiver() as r:
        settings.NETWORK_WEBHOOK_URL = r.url
        yield r


def test_command_is_delivered_signed_with_its_id(receiver, line, settings):
    command = enqueue_command(line=line, command="block_data", reason="data exhausted")
    report = deliver_due_commands()
    assert report.delivered == [command.pk]
    [request] = receiver.requests
    assert json.loads(request["body"]) == {
        "id": command.pk,
        "command": "block_data",
        "iccid": line.iccid,
        "reason": "data exhausted",
        "created_at": command.created_at.isoformat(),
        "sequence": 1,
    }
    assert request["headers"]["Idempotency-Key"] == f"network-command-{command.pk}"
    partner_signature.verify(
        header=request["headers"]["X-Signature"],
        secret=settings.NETWORK_WEBHOOK_SECRET,
        body=request["body"],
        now=timezone.now(),
        tolerance=timedelta(minutes=5),
    )
    command.refresh_from_db()
    assert (command.status, command.attempts, command.last_response_code) == ("delivered", 1, 200)
    assert command.delivered_at is not None


def test_a_500_is_retried_at_the_backoff_time_not_before(receiver, line):
    receiver.responses = [500, 503]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        command = enqueue_command(line=line, command="suspend", reason="renewal failed")
        assert deliver_due_commands().retrying == [command.pk]
    command.refresh_from_db()
    assert (command.status, command.attempts, command.last_response_code) == ("pending", 1, 500)
    assert command.next_attempt_at == start + timedelta(seconds=30)
    assert "HTTP 500" in command.last_error

    with time_machine.travel(start + timedelta(seconds=29), tick=False):
        assert deliver_due_commands().retrying == []
    assert len(receiver.requests) == 1

    with time_machine.travel(start + timedelta(seconds=31), tick=False):
        assert deliver_due_commands().retrying == [command.pk]
    command.refresh_from_db()
    assert (command.attempts, command.next_attempt_at) == (2, start + timedelta(seconds=31) + timedelta(minutes=2))

    with time_machine.travel(start + timedelta(minutes=3), tick=False):
        assert deliver_due_commands().delivered == [command.pk]
    assert [r["code"] for r in receiver.requests] == [500, 503, 200]
    assert {json.loads(r["body"])["id"] for r in receiver.requests} == {command.pk}


def test_an_unreachable_partner_is_retried(line, settings):
    with Receiver() as down:
        settings.NETWORK_WEBHOOK_URL = down.url
    command = enqueue_command(line=line, command="resume")
    assert deliver_due_commands().retrying == [command.pk]
    command.refresh_from_db()
    assert (command.status, command.last_response_code) == ("pending", None)
    assert "ConnectionError" in command.last_error


def test_commands_of_a_line_are_delivered_in_order_even_across_a_retry(receiver, customer, package):
    line, other = make_line(owner=customer, package=package), make_line(owner=customer, package=package)
    receiver.responses = [500]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        block = enqueue_command(line=line, command="block_data")
        unblock = enqueue_command(line=line, command="unblock_data")
        elsewhere = enqueue_command(line=other, command="suspend")
        report = deliver_due_commands()
    # The block failed, so the unblock written after it must wait; another line is not held up.
    assert (report.retrying, report.delivered) == ([block.pk], [elsewhere.pk])
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        assert deliver_due_commands().delivered == [block.pk, unblock.pk]
    sent = [(c["id"], c["command"]) for c in receiver.commands()]
    assert sent == [
        (block.pk, "block_data"),
        (elsewhere.pk, "suspend"),
        (block.pk, "block_data"),
        (unblock.pk, "unblock_data"),
    ]


def test_after_the_last_attempt_the_command_fails_and_the_line_moves_on(receiver, line):
    receiver.responses = [500] * outbox.MAX_ATTEMPTS
    start = timezone.now()
    first = enqueue_command(line=line, command="block_data")
    second = enqueue_command(line=line, command="unblock_data")
    for attempt in range(outbox.MAX_ATTEMPTS):
        with time_machine.travel(start + timedelta(days=attempt + 1), tick=False):
            deliver_due_commands()
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.attempts) == ("failed", outbox.MAX_ATTEMPTS)
    assert second.status == "delivered"

    # The unblock written after it was delivered: sending the block now would undo it.
    receiver.requests.clear()
    assert retry_command_now(command=first).status == "superseded"
    assert deliver_due_commands().delivered == []


def test_a_claimed_command_is_not_claimed_again_while_its_lease_runs(line):
    command = enqueue_command(line=line, command="block_data")
    now = timezone.now()
    assert [c.pk for c in outbox.claim_due_commands(now=now)] == [command.pk]
    assert outbox.claim_due_commands(now=now + timedelta(minutes=1)) == []
    # A sender that died mid-delivery: the command is sent again after the lease.
    assert [c.pk for c in outbox.claim_due_commands(now=now + outbox.DELIVERY_LEASE + timedelta(seconds=1))] == [
        command.pk
    ]


def test_without_a_webhook_url_commands_wait(line, settings):
    settings.NETWORK_WEBHOOK_URL = ""
    command = enqueue_command(line=line, command="block_data")
    assert deliver_due_commands().delivered == []
    command.refresh_from_db()
    assert (command.status, command.attempts) == ("pending", 0)


def test_an_unknown_command_is_refused(line):
    with pytest.raises(network.UnknownCommand):
        enqueue_command(line=line, command="explode")
    assert not NetworkCommand.objects.exists()


def test_a_command_lives_and_dies_with_the_callers_transaction(line):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            enqueue_command(line=line, command="suspend")
            raise RuntimeError("the suspension did not commit")
    assert not NetworkCommand.objects.exists()


def test_the_beat_task_delivers_what_no_worker_was_told_about(receiver, line):
    """Redis lost the kick (or was never reached): the rows are still there for the sweep."""
    # In a test's transaction the kick after commit never runs: the row is all there is.
    command = enqueue_command(line=line, command="block_data", reason="written while Redis was down")
    assert deliver_network_commands() == {"delivered": 1, "retrying": 0, "failed": 0}
    command.refresh_from_db()
    assert command.status == "delivered"


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_deliver_each_command_once(receiver, customer, package):
    lines = [make_line(owner=customer, package=package) for _ in range(10)]
    commands = [enqueue_command(line=line, command=c) for line in lines for c in ("block_data", "unblock_data")]
    barrier = threading.Barrier(2)

    def sweep():
        try:
            barrier.wait()
            deliver_due_commands()
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [c["id"] for c in receiver.commands()]
    assert sorted(sent) == sorted(c.pk for c in commands)
    for line in lines:
        per_line = [c["command"] for c in receiver.commands() if c["iccid"] == line.iccid]
        assert per_line == ["block_data", "unblock_data"]
    assert set(NetworkCommand.objects.values_list("status", flat=True)) == {"delivered"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_delivers_a_command_right_after_the_commit(receiver, line, tmp_path):
    """The kick after commit reaches a real Celery worker through Redis; no beat needed."""
    log = tmp_path / "worker.log"
    with celery_worker(
        log, NETWORK_WEBHOOK_URL=receiver.url, NETWORK_WEBHOOK_SECRET=django_settings.NETWORK_WEBHOOK_SECRET
    ):
        with transaction.atomic():
            command = enqueue_command(line=line, command="block_data", reason="data exhausted")

        def delivered():
            command.refresh_from_db()
            return command.status == "delivered"

        assert wait_until(delivered), log.read_text()
    assert [c["id"] for c in receiver.commands()] == [command.pk]


def test_retry_now_cuts_a_long_backoff_short_but_never_a_lease(receiver, line):
    receiver.responses = [500] * 5
    start = timezone.now()
    command = enqueue_command(line=line, command="suspend")
    for minutes in (1, 3, 14, 45):  # backoffs 30 s, 2 min, 10 min, 30 min
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            deliver_due_commands()
    command.refresh_from_db()
    assert (command.attempts, command.next_attempt_at) == (4, start + timedelta(minutes=45 + 30))
    with time_machine.travel(start + timedelta(minutes=50), tick=False):
        retry_command_now(command=command)
        assert deliver_due_commands().retrying == [command.pk]  # 5th attempt, now 1 h away
        retry_command_now(command=command)
        assert [c.pk for c in outbox.claim_due_commands(now=timezone.now())] == [command.pk]
        retry_command_now(command=command)  # claimed: on the wire, its lease stands
        assert outbox.claim_due_commands(now=timezone.now() + timedelta(minutes=1)) == []


@pytest.mark.parametrize("who", ["anonymous", "customer"])
def test_only_staff_reach_the_outbox_in_the_admin(client, customer, line, who):
    command = enqueue_command(line=line, command="block_data")
    if who == "customer":
        client.force_login(customer)
    for url in ("/admin/accounts/networkcommand/", f"/admin/accounts/networkcommand/{command.pk}/change/"):
        response = client.get(url)
        # Sent to a login (anonymous) or refused (a customer, once the two-factor admin site is merged).
        assert response.status_code in (302, 403)
        assert line.iccid.encode() not in response.content
