"""What every log line carries and what none may carry (docs/operations-metrics.md "Logs"): the
request id of the request it was written in, the renewal/charge/line ids its message names as
fields of their own, and no card number or full phone number (masked, whoever wrote the line).
The same masking scrubs the events sent to Sentry (esimsite/settings/production.py)."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Any

from pythonjsonlogger.json import JsonFormatter

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# A request id from the proxy or the client is kept only if it looks like one (no spaces, no
# markup, bounded): it goes into every log line and back into a response header.
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@-]{8,128}$")

# Card-number-like digit runs, also in groups ("4242 4242 4242 4242"); only Luhn-valid ones with a
# card's first digit (2-6) are masked, so ICCIDs (89...), epoch times and ids stay readable.
_CARD_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z])")
# International numbers as they are stored and typed (E.164, maybe grouped): all but the last two digits.
_PHONE = re.compile(r"(?<![0-9A-Za-z])\+\d(?:[ ().-]?\d){6,16}(?![0-9A-Za-z])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# The engine's ids in its messages ("renewal=12 line=3 charge=7"), lifted into fields of their own.
_IDS = re.compile(r"\b(renewal|charge|line)=(\d+)\b")


def _luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    if 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn_valid(digits):
        return "[card]"
    return match.group()


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "+" + "•" * (len(digits) - 2) + digits[-2:]


def mask(text: str, *, emails: bool = False) -> str:
    """Card-like numbers become [card], phone numbers keep their last two digits; with emails=True
    (Sentry) addresses become [email]. Logs keep emails: the support desk searches by them."""
    text = _CARD_CANDIDATE.sub(_mask_card, text)
    text = _PHONE.sub(_mask_phone, text)
    if emails:
        text = _EMAIL.sub("[email]", text)
    return text


def new_request_id(given: str | None) -> str:
    return given if given and SANE_REQUEST_ID.match(given) else uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """On the handlers (a logger's own filters miss records its children propagate): masks the
    message, adds request_id and the engine ids it names."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = mask(record.getMessage())
        record.msg, record.args = message, None
        record.request_id = request_id.get()
        for name, value in _IDS.findall(message):
            if not hasattr(record, f"{name}_id"):
                setattr(record, f"{name}_id", int(value))
        return True


class MaskedJsonFormatter(JsonFormatter):
    """One JSON object per line (production); tracebacks are masked like messages."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return mask(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return mask(super().formatStack(stack_info))


class MaskedFormatter(logging.Formatter):
    """The plain development/test line, tracebacks masked too."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return mask(super().formatException(ei))


def scrub_sentry_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Sentry's before_send: every string of the event (messages, exception values, breadcrumbs,
    local variables, request data) with card-like numbers, phone numbers and email addresses
    masked. send_default_pii=False already keeps cookies, headers' auth, user and IPs out."""
    return _scrub(event)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value, emails=True)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value
