"""The partner applies a line's commands in the order the database wrote them: each command
carries its line's sequence number, a sender re-checks its claim (a fencing token) before it
sends, only a 2xx from the exact URL counts, and a command the partner refuses for good is
dead-lettered with an alert instead of holding the line's later commands for days."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import NetworkCommand
from accounts.services.network import enqueue_command
from console import operations
from partner.services import outbox
from partner.services.outbox import deliver_due_commands, retry_command_now
from tests.builders import make_line
from tests.partner.helpers import Receiver


@pytest.fixture
def receiver(settings):
    with Receiver() as r:
        settings.NETWORK_WEBHOOK_URL = r.url
        yield r


def sent(receiver) -> list[tuple[str, int]]:
    return [(c["command"], c["sequence"]) for c in receiver.commands()]


def test_each_command_carries_its_lines_sequence(receiver, customer, package):
    line, other = make_line(owner=customer, package=package), make_line(owner=customer, package=package)
    enqueue_command(line=line, command="suspend")
    enqueue_command(line=other, command="block_data")
    enqueue_command(line=line, command="resume")
    deliver_due_commands()
    assert [(c["iccid"], c["command"], c["sequence"]) for c in receiver.commands()] == [
        (line.iccid, "suspend", 1),
        (other.iccid, "block_data", 1),
        (line.iccid, "resume", 2),
    ]


def test_a_sender_whose_claim_was_taken_over_never_sends_its_stale_copy(receiver, line):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        block = enqueue_command(line=line, command="block_data")
        unblock = enqueue_command(line=line, command="unblock_data")
        [stale] = outbox.claim_due_commands(now=start)  # a sweep that then stalls past its lease
    with time_machine.travel(start + outbox.DELIVERY_LEASE + timedelta(seconds=1), tick=False):
        assert deliver_due_commands().delivered == [block.pk, unblock.pk]
        outbox.deliver(command=stale, now=timezone.now())
    # The partner's last word for the line is still the unblock.
    assert [c["command"] for c in receiver.commands()] == ["block_data", "unblock_data"]
    assert sent(receiver) == [("block_data", 1), ("unblock_data", 2)]
    stale.refresh_from_db()
    assert stale.status == "delivered"


def test_a_redirect_is_not_a_delivery(receiver, line):
    receiver.responses = [307]
    command = enqueue_command(line=line, command="suspend")
    assert deliver_due_commands().retrying == [command.pk]
    assert [r["path"] for r in receiver.requests] == ["/commands"]  # the redirect was not followed
    command.refresh_from_db()
    assert (command.status, command.last_response_code) == ("pending", 307)


@pytest.mark.parametrize("code", [400, 404, 422])
def test_a_permanent_rejection_is_dead_lettered_with_an_alert_and_the_line_moves_on(receiver, line, client, code):
    receiver.responses = [code]
    block = enqueue_command(line=line, command="block_data")
    suspend = enqueue_command(line=line, command="suspend")
    report = deliver_due_commands()
    assert (report.failed, report.delivered) == ([block.pk], [suspend.pk])
    block.refresh_from_db()
    assert (block.status, block.attempts, block.last_response_code) == ("failed", 1, code)
    assert [c.pk for c in operations.dead_lettered_commands()] == [block.pk]
    body = client.get("/healthz").json()
    assert (body["network_outbox"], body["network_commands_dead_lettered"]) == ("attention", 1)


@pytest.mark.parametrize("code", [401, 403, 408, 429])
def test_a_rejection_that_can_pass_is_retried(receiver, line, code):
    receiver.responses = [code]
    command = enqueue_command(line=line, command="block_data")
    assert deliver_due_commands().retrying == [command.pk]


def test_retrying_a_dead_letter_that_a_later_command_overrode_sends_nothing(receiver, line):
    receiver.responses = [422]
    block = enqueue_command(line=line, command="block_data")
    enqueue_command(line=line, command="unblock_data")
    deliver_due_commands()
    receiver.requests.clear()
    block = retry_command_now(command=block)
    assert block.status == "superseded"
    assert deliver_due_commands().delivered == []
    assert receiver.requests == []
    assert list(operations.dead_lettered_commands()) == []


def test_retrying_a_dead_letter_sends_it_after_the_lines_current_state(receiver, line):
    receiver.responses = [422]
    block = enqueue_command(line=line, command="block_data")
    enqueue_command(line=line, command="suspend")
    deliver_due_commands()
    receiver.requests.clear()
    block = retry_command_now(command=block)
    assert block.status == "superseded"
    [again] = NetworkCommand.objects.filter(line=line, status="pending")
    assert deliver_due_commands().delivered == [again.pk]
    assert sent(receiver) == [("block_data", 3)]
    assert list(operations.dead_lettered_commands()) == []
