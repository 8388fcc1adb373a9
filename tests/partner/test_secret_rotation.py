"""Rotating the partner link's secrets without downtime (docs/deploying.md#rotating-secrets):
usage batches verify with PARTNER_USAGE_SECRET or, while set, PARTNER_USAGE_SECRET_PREVIOUS;
network commands carry a signature with NETWORK_WEBHOOK_SECRET and, while set, one with
NETWORK_WEBHOOK_SECRET_PREVIOUS, so the partner accepts them whichever it holds."""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.services.network import enqueue_command
from partner import signature as partner_signature
from partner.services.outbox import deliver_due_commands
from tests.partner.helpers import Receiver, record, signed_post

NEW, OLD = "usage-secret-new", "usage-secret-old"


@pytest.fixture
def rotating(settings):
    settings.PARTNER_USAGE_SECRET = NEW
    settings.PARTNER_USAGE_SECRET_PREVIOUS = OLD
    return settings


def test_usage_signed_with_the_current_secret_is_accepted_during_a_rotation(client, line, rotating):
    response = signed_post(client, {"records": [record(line, id="r-1", bytes=1)]}, secret=NEW)
    assert response.status_code == 200 and response.json()["accepted"] == 1


def test_usage_signed_with_the_previous_secret_is_accepted_and_logged(client, line, rotating, caplog):
    caplog.set_level(logging.INFO, logger="partner.api")
    response = signed_post(client, {"records": [record(line, id="r-1", bytes=1)]}, secret=OLD)
    assert response.status_code == 200 and response.json()["accepted"] == 1
    assert "usage_batch_signed_with_previous_secret" in caplog.text


def test_usage_signed_with_an_unknown_secret_is_refused(client, line, rotating):
    used_before = line.data_used_bytes
    response = signed_post(client, {"records": [record(line, id="r-1", bytes=1)]}, secret="someone-elses")
    assert response.status_code == 401
    line.refresh_from_db()
    assert line.data_used_bytes == used_before


def test_once_the_previous_secret_is_unset_only_the_current_one_is_accepted(client, line, settings):
    settings.PARTNER_USAGE_SECRET = NEW
    settings.PARTNER_USAGE_SECRET_PREVIOUS = ""
    assert signed_post(client, {"records": [record(line, id="r-1", bytes=1)]}, secret=OLD).status_code == 401
    assert signed_post(client, {"records": [record(line, id="r-1", bytes=1)]}, secret=NEW).status_code == 200


def partner_accepts(request, secret: str) -> bool:
    """What the partner does with our command, holding `secret`."""
    try:
        partner_signature.verify(
            header=request["headers"]["X-Signature"],
            secret=secret,
            body=request["body"],
            now=timezone.now(),
            tolerance=timedelta(minutes=5),
        )
    except partner_signature.SignatureError:
        return False
    return True


def test_commands_during_a_rotation_verify_with_either_network_secret(line, settings):
    settings.NETWORK_WEBHOOK_SECRET = "network-new"
    settings.NETWORK_WEBHOOK_SECRET_PREVIOUS = "network-old"
    with Receiver() as receiver:
        settings.NETWORK_WEBHOOK_URL = receiver.url
        enqueue_command(line=line, command="block_data", reason="data exhausted")
        deliver_due_commands()
    [request] = receiver.requests
    assert request["headers"]["X-Signature"].count("v1=") == 2
    assert partner_accepts(request, "network-new") and partner_accepts(request, "network-old")
    assert not partner_accepts(request, "network-other")


def test_commands_after_a_rotation_are_signed_with_the_current_network_secret_only(line, settings):
    settings.NETWORK_WEBHOOK_SECRET = "network-new"
    settings.NETWORK_WEBHOOK_SECRET_PREVIOUS = ""
    with Receiver() as receiver:
        settings.NETWORK_WEBHOOK_URL = receiver.url
        enqueue_command(line=line, command="block_data", reason="data exhausted")
        deliver_due_commands()
    [request] = receiver.requests
    assert request["headers"]["X-Signature"].count("v1=") == 1
    assert partner_accepts(request, "network-new") and not partner_accepts(request, "network-old")


@pytest.mark.pure
def test_verify_says_which_secret_signed():
    now = timezone.now()
    body = b'{"records": []}'
    header = partner_signature.sign(secret=OLD, body=body, now=now)
    tolerance = timedelta(minutes=5)
    assert partner_signature.verify(header=header, secret=OLD, body=body, now=now, tolerance=tolerance) == "current"
    assert (
        partner_signature.verify(
            header=header, secret=NEW, previous_secret=OLD, body=body, now=now, tolerance=tolerance
        )
        == "previous"
    )
    with pytest.raises(partner_signature.SignatureError):
        partner_signature.verify(header=header, secret=NEW, body=body, now=now, tolerance=tolerance)
