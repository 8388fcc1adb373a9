"""The signature scheme shared by both directions of the partner link: usage batches in
(PARTNER_USAGE_SECRET) and network commands out (NETWORK_WEBHOOK_SECRET).

    X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

Signing the timestamp with the body makes a captured request useless after the tolerance window.

Rotating a secret without downtime (docs/deploying.md#rotating-secrets): for a while each side
knows a current and a previous secret. Incoming requests verify with either (`verify`'s
`previous_secret`); outgoing ones carry one v1 per secret (`sign`'s `previous_secret`), so the
receiver accepts them whichever of the two it holds.
"""

import hashlib
import hmac
from datetime import datetime, timedelta

HEADER = "X-Signature"


class SignatureError(Exception):
    """The request is not from the partner (or too old to tell); the message says why, for the log."""


def compute(*, secret: str, timestamp: int | str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(*, secret: str, body: bytes, now: datetime, previous_secret: str = "") -> str:
    """The X-Signature header value for `body` sent at `now`: a v1 with `secret`, and a second
    with `previous_secret` while one is set (a rotation)."""
    timestamp = int(now.timestamp())
    header = f"t={timestamp},v1={compute(secret=secret, timestamp=timestamp, body=body)}"
    if previous_secret and previous_secret != secret:
        header += f",v1={compute(secret=previous_secret, timestamp=timestamp, body=body)}"
    return header


def verify(
    *,
    header: str | None,
    secret: str,
    body: bytes,
    now: datetime,
    tolerance: timedelta,
    previous_secret: str = "",
) -> str:
    """Raise SignatureError unless `header` signs `body` with `secret` (or, during a rotation,
    `previous_secret`) within `tolerance` of `now`. Returns "current" or "previous": which one did.

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
    for which, key in (("current", secret), ("previous", previous_secret)):
        if not key:
            continue
        # The digest covers t exactly as sent.
        expected = compute(secret=key, timestamp=timestamp, body=body)
        # compare_digest on ASCII bytes: constant time, and no TypeError on non-ASCII input.
        matches = [hmac.compare_digest(expected.encode(), c.encode("utf-8", "replace")) for c in candidates]
        if any(matches):
            return which
    raise SignatureError("X-Signature does not match the body")
