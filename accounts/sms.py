"""Pluggable SMS sending (settings.SMS_BACKEND), like Django's email backends: the console in
development, an in-memory outbox in tests, and for production Twilio (its official SDK) or a
generic gateway reached by a signed HTTP POST. How to choose and what each sends:
docs/notifications.md#sms.

A text carries a verification code: neither it nor the full number ever reaches a log line or an
exception message (SMSError says the backend, the HTTP status and the provider's code only)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

outbox: list[dict] = []  # filled by LocmemBackend, read by tests: {"to": ..., "body": ..., "id": ...}


class SMSError(Exception):
    """The text was not sent. The message is safe to log: no text, no number."""

    retryable = False
    kind = "failed"

    def __init__(self, *, backend: str, status: int | None = None, provider_code: int | str | None = None):
        self.backend = backend
        self.status = status
        self.provider_code = provider_code
        super().__init__(f"sms {self.kind} backend={backend} status={status} provider_code={provider_code}")


class SMSRejected(SMSError):
    """The provider refuses this number (not a valid number, not a mobile, opted out): sending
    again will not help, the person needs to give another number."""

    kind = "rejected"


class SMSUnavailable(SMSError):
    """Nothing was sent for a reason on our side or the provider's (credentials refused, account
    suspended, our request malformed): the person can only try later; the operator must act."""

    kind = "unavailable"


class SMSTransient(SMSUnavailable):
    """The provider is busy or down, or did not answer in time: worth another attempt."""

    retryable = True
    kind = "transient"


class Backend(Protocol):
    name: str

    def send(self, *, to: str, body: str, message_id: str) -> None: ...


def masked(phone: str) -> str:
    """The number as logs show it: the country code's first digits and the last two."""
    if len(phone) <= 6:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 5) + phone[-2:]


def send_sms(*, to: str, body: str, retry: bool = False) -> None:
    """Send one text through settings.SMS_BACKEND, or raise SMSError.

    With `retry` (verification codes), a transient failure is tried again after each delay of
    SMS_RETRY_DELAYS_SECONDS: a bounded number of attempts inside the one send allauth counted
    against its rate limits. The same message id goes with every attempt, so a gateway that
    deduplicates by id delivers it once."""
    backend: Backend = import_string(settings.SMS_BACKEND)()
    message_id = uuid.uuid4().hex
    delays = list(settings.SMS_RETRY_DELAYS_SECONDS) if retry else []
    attempt = 0
    while True:
        attempt += 1
        try:
            backend.send(to=to, body=body, message_id=message_id)
        except SMSError as exc:
            will_retry = exc.retryable and bool(delays)
            logger.log(
                logging.WARNING if will_retry or isinstance(exc, SMSRejected) else logging.ERROR,
                "sms_failed backend=%s id=%s to=%s attempt=%s kind=%s status=%s provider_code=%s will_retry=%s",
                exc.backend,
                message_id,
                masked(to),
                attempt,
                exc.kind,
                exc.status,
                exc.provider_code,
                will_retry,
            )
            if not will_retry:
                raise
            time.sleep(delays.pop(0))
            continue
        logger.info(
            "sms_sent backend=%s id=%s to=%s attempts=%s", getattr(backend, "name", ""), message_id, masked(to), attempt
        )
        return


class ConsoleBackend:
    """Development: the code shows up in the runserver log. Never in production."""

    name = "console"

    def send(self, *, to: str, body: str, message_id: str = "") -> None:
        logger.info("sms to=%s body=%s", to, body)


class LocmemBackend:
    name = "locmem"

    def send(self, *, to: str, body: str, message_id: str = "") -> None:
        outbox.append({"to": to, "body": body, "id": message_id})


def _from_status(backend: str, status: int, provider_code: int | str | None, permanent: bool) -> SMSError:
    if status == 429 or status >= 500:
        return SMSTransient(backend=backend, status=status, provider_code=provider_code)
    if permanent:
        return SMSRejected(backend=backend, status=status, provider_code=provider_code)
    return SMSUnavailable(backend=backend, status=status, provider_code=provider_code)


# --- Twilio -------------------------------------------------------------------------------------

# Twilio error codes that are about the recipient, not about us (twilio.com/docs/api/errors):
# 21211 invalid 'To' number, 21214 'To' cannot be reached, 21217 not a valid phone number,
# 21407/21408 region or number type not enabled for the account, 21610 the recipient replied
# STOP, 21612 no route from our sender to this number, 21614 not a mobile number.
TWILIO_RECIPIENT_ERRORS = frozenset({21211, 21214, 21217, 21407, 21408, 21610, 21612, 21614})


def _twilio_http_client(*, api_base: str, timeout: float) -> Any:
    from twilio.http.http_client import TwilioHttpClient

    class RebasedHttpClient(TwilioHttpClient):
        """Twilio's own HTTP client, sending to SMS_TWILIO_API_BASE instead of the host the SDK
        built (the stand-in in tests): only the scheme and host change, never the path."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            base = urlsplit(api_base)
            parts = urlsplit(url)
            url = urlunsplit((base.scheme, base.netloc, parts.path, parts.query, parts.fragment))
            return super().request(method, url, *args, **kwargs)

    # No retries inside the SDK: send_sms decides what to retry.
    return RebasedHttpClient(timeout=timeout, max_retries=0)


class TwilioBackend:
    """Twilio's Messages API through the twilio SDK: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or
    an API key's sid and secret with TWILIO_ACCOUNT_SID), from TWILIO_FROM or a messaging
    service (TWILIO_MESSAGING_SERVICE_SID, which wins)."""

    name = "twilio"

    def __init__(self) -> None:
        from twilio.rest import Client

        self.client = Client(
            settings.TWILIO_API_KEY_SID or settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN,
            account_sid=settings.TWILIO_ACCOUNT_SID,
            http_client=_twilio_http_client(
                api_base=settings.SMS_TWILIO_API_BASE, timeout=settings.SMS_TIMEOUT_SECONDS
            ),
        )

    def send(self, *, to: str, body: str, message_id: str = "") -> None:
        from twilio.base.exceptions import TwilioException

        sender: dict[str, str] = (
            {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
            if settings.TWILIO_MESSAGING_SERVICE_SID
            else {"from_": settings.TWILIO_FROM}
        )
        try:
            self.client.messages.create(to=to, body=body, **sender)
        except TwilioException as exc:
            # The SDK's message quotes Twilio's, which names the number: only status and code go on.
            status = int(getattr(exc, "status", 0) or 0)
            code = getattr(exc, "code", None)
            raise _from_status(self.name, status, code, code in TWILIO_RECIPIENT_ERRORS) from None
        except requests.RequestException:
            raise SMSTransient(backend=self.name) from None


# --- a gateway of one's own, by signed HTTP ------------------------------------------------------

SIGNATURE_HEADER = "X-SMS-Signature"


def signature(*, secret: str, timestamp: int | str, body: bytes) -> str:
    """hex HMAC-SHA256 of "<timestamp>.<raw body>" (the scheme in docs/notifications.md#sms)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


class SignedHTTPBackend:
    """POST {"id", "to", "body"} as JSON to SMS_HTTP_URL, signed with SMS_HTTP_SECRET:

        X-SMS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

    2xx: accepted. 422: the number is refused (permanent). 429 and 5xx: try again. Anything else
    (401/403 a signature or secret mismatch, 400 a malformed request): not sent, no retry. The
    gateway should deduplicate by id: a retry after a lost answer repeats it."""

    name = "http"

    def send(self, *, to: str, body: str, message_id: str = "") -> None:
        raw = json.dumps({"id": message_id, "to": to, "body": body}, separators=(",", ":")).encode()
        timestamp = int(timezone.now().timestamp())
        header = f"t={timestamp},v1={signature(secret=settings.SMS_HTTP_SECRET, timestamp=timestamp, body=raw)}"
        try:
            response = requests.post(
                settings.SMS_HTTP_URL,
                data=raw,
                headers={"Content-Type": "application/json", SIGNATURE_HEADER: header},
                timeout=settings.SMS_TIMEOUT_SECONDS,
                allow_redirects=False,
            )
        except requests.RequestException:
            raise SMSTransient(backend=self.name) from None
        if 200 <= response.status_code < 300:
            return
        code = None
        try:
            answer = response.json()
            code = str(answer.get("error"))[:40] if isinstance(answer, dict) and answer.get("error") else None
        except ValueError:
            pass
        raise _from_status(self.name, response.status_code, code, response.status_code == 422)
