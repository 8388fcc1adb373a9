"""The production SMS backends (accounts/sms.py) against the providers' stand-ins, a separate
process on 127.0.0.1 (tests/accounts/sms_standin.py): what they send, how a refused number, a
provider failure and our own bad credentials reach the customer, and that neither the code nor the
full number reaches a log line."""

import json
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.urls import reverse

from accounts import sms
from accounts.models import User
from tests.accounts.helpers import PASSWORD, sign_up, sms_code
from tests.builders import make_user
from tests.partner.helpers import wait_until

STANDIN = Path(__file__).with_name("sms_standin.py")
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "standin-auth-token"
HTTP_SECRET = "standin-sms-http-secret"
PHONE = "+447911123456"  # a number phonenumbers reads as a valid UK mobile, as sign-up requires
INVALID = "+15005550001"  # Twilio's test number for 21211
COULD_NOT_SEND = "We could not send the code right now. Please try again later."
REFUSED = "We could not send a text message to"


class StandIn:
    def __init__(self, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, str(STANDIN), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        line = self.process.stdout.readline()
        assert line.startswith("listening "), line
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def _call(self, path: str, payload: dict | None = None):
        data = None if payload is None else json.dumps(payload).encode()
        with urllib.request.urlopen(urllib.request.Request(self.url + path, data=data), timeout=10) as answer:
            return json.loads(answer.read())

    def received(self) -> list[dict]:
        return self._call("/_standin/received")

    def delivered(self) -> list[dict]:
        return [r for r in self.received() if r["delivered"]]

    def answer_next(self, *statuses: int) -> None:
        self._call("/_standin/answers", {"answers": list(statuses)})

    def reset(self) -> None:
        self._call("/_standin/reset", {})

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def twilio_process():
    stand_in = StandIn("twilio", "--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN, "--hang-seconds", "6")
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def http_process():
    stand_in = StandIn("http", "--secret", HTTP_SECRET)
    yield stand_in
    stand_in.stop()


@pytest.fixture
def twilio(twilio_process, settings):
    twilio_process.reset()
    settings.SMS_BACKEND = "accounts.sms.TwilioBackend"
    settings.SMS_TWILIO_API_BASE = twilio_process.url
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_FROM = "+15005550006"
    settings.SMS_RETRY_DELAYS_SECONDS = [0.0, 0.0]
    return twilio_process


@pytest.fixture
def gateway(http_process, settings):
    http_process.reset()
    settings.SMS_BACKEND = "accounts.sms.SignedHTTPBackend"
    settings.SMS_HTTP_URL = http_process.url + "/sms"
    settings.SMS_HTTP_SECRET = HTTP_SECRET
    settings.SMS_RETRY_DELAYS_SECONDS = [0.0, 0.0]
    return http_process


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def verify_page(client) -> str:
    response = client.get(reverse("account_verify_phone"))
    assert response.status_code == 200
    return response.content.decode()


# --- Twilio ----------------------------------------------------------------------------------------


def test_twilio_gets_the_code_in_the_messages_api_shape_and_it_verifies_the_phone(client, db, twilio):
    response = sign_up(client, email="ann@example.com", phone="+44 7911 123456")
    assert response["Location"] == reverse("account_verify_phone")
    [request] = twilio.received()
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request["auth"] and request["problems"] == [] and request["status"] == 201
    assert request["fields"] == ["Body", "From", "To"]
    assert request["to"] == PHONE and request["sender"] == "+15005550006"
    page = verify_page(client)
    assert "sent a code" in page and COULD_NOT_SEND not in page
    client.post(reverse("account_verify_phone"), {"code": sms_code(request)})
    assert User.objects.get().phone_verified


def test_twilio_messaging_service_replaces_the_from_number(db, twilio, settings):
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "0" * 32
    sms.send_sms(to=PHONE, body="hello")
    [request] = twilio.delivered()
    assert request["fields"] == ["Body", "MessagingServiceSid", "To"] and request["problems"] == []


def test_twilio_invalid_number_is_a_form_error_on_the_verify_page_not_a_500(client, db, twilio, logs):
    response = sign_up(client, email="ann@example.com", phone=INVALID)
    assert response.status_code == 302
    [request] = twilio.received()
    assert request["status"] == 400 and not request["delivered"]  # 21211, refused once: no retry
    page = verify_page(client)
    assert REFUSED in page and "sent a code" not in page
    assert "A verification code has been sent" not in page
    assert "provider_code=21211" in logs.text and "kind=rejected" in logs.text
    # The form error is shown once; the customer can give another number from there.
    assert REFUSED not in verify_page(client)


def test_twilio_500_then_success_delivers_the_code_once(client, db, twilio):
    twilio.answer_next(500)
    sign_up(client, email="ann@example.com", phone=PHONE)
    assert [r["status"] for r in twilio.received()] == [500, 201]
    [delivered] = twilio.delivered()
    assert "sent a code" in verify_page(client)
    client.post(reverse("account_verify_phone"), {"code": sms_code(delivered)})
    assert User.objects.get().phone_verified


def test_twilio_down_is_tried_a_bounded_number_of_times_then_try_later(client, db, twilio):
    twilio.answer_next(429, 500, 503, 500)
    sign_up(client, email="ann@example.com", phone=PHONE)
    assert [r["status"] for r in twilio.received()] == [429, 500, 503]  # three attempts, no more
    assert COULD_NOT_SEND in verify_page(client)


def test_twilio_not_answering_in_time_is_retried_and_the_code_delivered(client, db, twilio, settings):
    # The stand-in holds the first request for 6 s; we give up after 2 s and try again: ample
    # for a loopback answer on a loaded machine, and far below the hold.
    settings.SMS_TIMEOUT_SECONDS = 2.0
    twilio.answer_next(0)
    sign_up(client, email="ann@example.com", phone=PHONE)
    # The held request is recorded when it ends (and must end before the next test resets).
    assert wait_until(lambda: len(twilio.received()) == 2, timeout=60)
    assert sorted(r["status"] for r in twilio.received()) == [201, 503]
    [delivered] = twilio.delivered()
    assert "sent a code" in verify_page(client)
    client.post(reverse("account_verify_phone"), {"code": sms_code(delivered)})
    assert User.objects.get().phone_verified


def test_twilio_refusing_our_credentials_is_logged_and_the_customer_is_told_to_try_later(
    client, db, twilio, settings, logs
):
    settings.TWILIO_AUTH_TOKEN = "rotated-away"
    sign_up(client, email="ann@example.com", phone=PHONE)
    [request] = twilio.received()  # 20003: not retried, it will not get better by itself
    assert request["status"] == 401 and not request["auth"]
    [failure] = [r for r in logs.records if r.getMessage().startswith("sms_failed")]
    assert failure.levelno == logging.ERROR
    assert "kind=unavailable status=401 provider_code=20003" in failure.getMessage()
    page = verify_page(client)
    assert COULD_NOT_SEND in page and "sent a code" not in page


def test_signed_in_customer_changing_to_a_refused_number_sees_a_form_error(customer_client, customer, twilio):
    response = customer_client.post(reverse("account_change_phone"), {"phone": INVALID})
    assert response["Location"] == reverse("account_verify_phone")
    page = verify_page(customer_client)
    assert REFUSED in page and "sent a code" not in page
    customer.refresh_from_db()
    assert customer.phone is None


def test_sms_logs_never_show_the_code_or_the_whole_number(client, db, twilio, logs, settings):
    # Success after a retry, a refused number (whose Twilio message quotes it) and bad credentials.
    twilio.answer_next(500)
    sign_up(client, email="a@example.com", phone=PHONE)
    sign_up(client.__class__(), email="b@example.com", phone=INVALID)
    settings.TWILIO_AUTH_TOKEN = "wrong"
    make_user(email="c@example.com", password=PASSWORD, phone="+447911123457", phone_verified=False)
    client.__class__().post(reverse("account_login"), {"login": "+447911123457", "password": PASSWORD})
    received = twilio.received()
    assert [r["status"] for r in received] == [500, 201, 400, 401]
    codes = {sms_code(r) for r in received if r.get("body")}  # a request refused for auth is not read
    assert len(codes) == 2
    text = logs.text + "".join(str(r.exc_info) for r in logs.records if r.exc_info)
    assert "sms_sent" in text and "sms_failed" in text  # the scan reads the lines that matter
    for secret in [*codes, PHONE, INVALID, "+447911123457", "7911123456", "7911123457"]:
        assert secret not in text, secret
    assert "+44********56" in text  # the masked number is what operators see


# --- the generic signed-HTTP gateway ---------------------------------------------------------------


def test_gateway_gets_signed_json_and_the_code_verifies_the_phone(client, db, gateway):
    sign_up(client, email="ann@example.com", phone=PHONE)
    [request] = gateway.received()
    assert request["auth"] and request["problems"] == [] and request["status"] == 200
    assert request["fields"] == ["body", "id", "to"] and request["to"] == PHONE and request["id"]
    client.post(reverse("account_verify_phone"), {"code": sms_code(request)})
    assert User.objects.get().phone_verified


def test_gateway_refusing_the_number_is_a_form_error(client, db, gateway):
    sign_up(client, email="ann@example.com", phone=INVALID)
    assert [r["status"] for r in gateway.received()] == [422]
    assert REFUSED in verify_page(client)


def test_gateway_500_then_success_delivers_once_with_the_same_id(client, db, gateway):
    gateway.answer_next(500)
    sign_up(client, email="ann@example.com", phone=PHONE)
    first, second = gateway.received()
    assert (first["status"], second["status"]) == (500, 200) and first["id"] == second["id"]
    assert len(gateway.delivered()) == 1


def test_gateway_with_the_wrong_secret_is_refused_and_the_customer_told_to_try_later(
    client, db, gateway, settings, logs
):
    settings.SMS_HTTP_SECRET = "not-the-gateways"
    sign_up(client, email="ann@example.com", phone=PHONE)
    [request] = gateway.received()
    assert request["status"] == 401 and request["problems"] == ["signature"]
    assert "status=401" in logs.text and PHONE not in logs.text
    assert COULD_NOT_SEND in verify_page(client)


@pytest.mark.pure
def test_gateway_signature_is_the_documented_hmac():
    import hashlib
    import hmac

    body = b'{"id":"1","to":"+447700900123","body":"x"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sms.signature(secret="s3cret", timestamp=1700000000, body=body) == expected


@pytest.mark.pure
def test_sms_errors_say_status_and_provider_code_only():
    error = sms.SMSRejected(backend="twilio", status=400, provider_code=21211)
    assert str(error) == "sms rejected backend=twilio status=400 provider_code=21211"
    assert sms.masked("+447911123456") == "+44********56"
