"""Log lines carry no card number, no full phone number and no secret, and each carries what finds
it again: the request id, the engine's ids as fields. The flow (sign-up with a phone, a card added
at localstripe, a renewal charged) writes through the project's own console handler, its filter
and the production JSON formatter (docs/operations-metrics.md "Logs")."""

import copy
import io
import json
import logging
from logging.config import DictConfigurator

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts import sms
from accounts.log_context import ContextFilter
from accounts.models import User
from renewals.models import Renewal
from renewals.services import charging
from tests.accounts.helpers import confirmation_path, sign_up, sms_code
from tests.e2e.card_scan import card_numbers_in
from tests.renewals.test_charging import claimed

PHONE_TYPED, PHONE_E164 = "+86 138 0013 8000", "+8613800138000"


@pytest.fixture
def captured_log():
    """The root logger's configured console handler, writing JSON lines (production's formatter)
    into a buffer for the test."""
    [handler] = [h for h in logging.getLogger().handlers if any(isinstance(f, ContextFilter) for f in h.filters)]
    buffer = io.StringIO()
    old_stream, old_formatter = handler.setStream(buffer), handler.formatter
    # Production's formatter, made from the settings' own entry as logging's dictConfig makes it.
    handler.setFormatter(
        DictConfigurator({}).configure_formatter(copy.deepcopy(settings.LOGGING["formatters"]["json"]))
    )
    try:
        yield buffer
    finally:
        handler.setStream(old_stream)
        handler.setFormatter(old_formatter)


def lines(buffer) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_sign_up_card_and_renewal_log_no_card_phone_or_secret(client, db, captured_log, package, policy, add_card_for):
    response = sign_up(client, email="ann@example.com", phone=PHONE_TYPED)
    assert response.status_code == 302
    code = sms_code(sms.outbox[0])
    client.post(reverse("account_verify_phone"), {"code": code})
    client.post(confirmation_path(mail.outbox[0]))
    user = User.objects.get(email="ann@example.com")
    # The development SMS backend logs the message it would send, number included.
    sms.ConsoleBackend().send(to=PHONE_E164, body="Your code is 123456")
    # A careless line with a card number in it is masked too.
    logging.getLogger("payments.views").warning("card_entered raw=%s", "4242 4242 4242 4242")

    add_card_for(user)
    rule = make_rule_for(user, package)
    now = timezone.now()
    renewal = claimed(rule, now)
    renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)
    assert renewal.status == Renewal.Status.SUCCEEDED

    text = captured_log.getvalue()
    records = lines(captured_log)
    assert records, "the flow logged nothing: the capture is broken"
    assert card_numbers_in(text) == []
    for phone in (PHONE_E164, PHONE_E164[1:], "138 0013 8000", "13800138000"):
        assert phone not in text
    assert "+•••••••••••00" in text  # the masked number: the last two digits only
    for secret in (settings.STRIPE_SECRET_KEY, settings.PARTNER_USAGE_SECRET, settings.SECRET_KEY, "a-Long-passw0rd!"):
        assert secret not in text
    engine = [r for r in records if r["logger"].startswith("renewals.") and f"renewal={renewal.pk}" in r["message"]]
    assert engine and all(r.get("renewal_id") == renewal.pk and r.get("line_id") == rule.line_id for r in engine)
    assert any(r.get("charge_id") for r in engine)


def test_every_request_has_an_id_in_its_log_lines_and_its_response(client, db, captured_log):
    response = client.post(reverse("account_login"), {"login": "nobody@example.com", "password": "wrong"})
    generated = response["X-Request-ID"]
    assert len(generated) == 32
    logging.getLogger("accounts").info("outside any request")
    given = client.get(reverse("account_login"), headers={"X-Request-ID": "lb-7f3a9c21-0001"})
    assert given["X-Request-ID"] == "lb-7f3a9c21-0001"
    hostile = client.get(reverse("account_login"), headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert hostile["X-Request-ID"] != "<script>alert(1)</script>" and len(hostile["X-Request-ID"]) == 32
    outside = [r for r in lines(captured_log) if r["message"] == "outside any request"]
    assert outside and outside[0]["request_id"] == "-"


@pytest.fixture
def policy(db):
    from renewals.models import RetryPolicy

    return RetryPolicy.current()


@pytest.fixture
def add_card_for():
    from payments import gateways
    from tests.payments.conftest import create_card

    def _add(user):
        stripe_customer = gateways.ensure_customer(user)
        pm = gateways.attach_payment_method(customer_id=stripe_customer.id, payment_method_id=create_card())
        gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=pm.id)
        return pm

    return _add


def make_rule_for(user, package):
    from tests.builders import MB, make_line, make_rule

    line = make_line(owner=user, package=package, data_remaining_bytes=100 * MB)
    return make_rule(line=line, package=package)
