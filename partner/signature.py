"""The signature scheme shared by both directions of the partner link: usage batches in
(PARTNER_USAGE_SECRET) and network commands out (NETWORK_WEBHOOK_SECRET).

    X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

Signing the timestamp with the body makes a captured request useless after the tolerance window.
"""

import hashlib
import hmac
from datetime import datetime, timedelta

HEADER = "X-Signature"


class SignatureError(Exception):
    """The request is not from the partner (or too old to tell); the message says why, for the log."""


def compute(*, secret: str, timestamp: int | str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(*, secret: str, body: bytes, now: datetime) -> str:
    """The X-Signature header value for `body` sent at `now`."""
    timestamp = int(now.timestamp())
    return f"t={timestamp},v1={compute(secret=secret, timestamp=timestamp, body=body)}"


def verify(*, header: str | None, secret: str, body: bytes, now: datetime, tolerance: timedelta) -> None:
    """Raise SignatureError unless `header` signs `body` with `secret` within `tolerance` of `now`.

    Several v1 entries are allowed so that the partner can sign with an old and a new secret
    while a secret is being rotated.
    """
    if not header:
        raise SignatureError("missing X-Signature header")
    timestamp = None
    candidates = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("X-Signature has no valid t=<unix seconds>")
    if not candidates:
        raise SignatureError("X-Signature has no v1=<hex digest>")
    seconds = int(timestamp)
    if abs(now.timestamp() - seconds) > tolerance.total_seconds():
        raise SignatureError("X-Signature timestamp is outside the tolerance window")
    # The digest covers t exactly as sent.
    expected = compute(secret=secret, timestamp=timestamp, body=body)
    # compare_digest on ASCII bytes: constant time, and no TypeError on non-ASCII input.
    matches = [hmac.compare_digest(expected.encode(), c.encode("utf-8", "replace")) for c in candidates]
    if not any(matches):
        raise SignatureError("X-Signature does not match the body")
