"""The partner link's signature (partner/signature.py), with no service: a header signs
the body and its time, a wrong secret, a changed body or an old header is refused, and two v1
entries let the partner rotate its secret."""

from datetime import UTC, datetime, timedelta

import pytest

from partner import signature as partner_signature
from partner.signature import SignatureError

pytestmark = pytest.mark.pure

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
BODY = b'{"records": []}'
TOLERANCE = timedelta(minutes=5)


def verify(header, *, secret="s3cret", body=BODY, now=NOW):
    partner_signature.verify(header=header, secret=secret, body=body, now=now, tolerance=TOLERANCE)


def test_a_header_signed_with_the_secret_verifies():
    verify(partner_signature.sign(secret="s3cret", body=BODY, now=NOW))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"secret": "other"}, "wrong secret"),
        ({"body": BODY + b" "}, "changed body"),
        ({"now": NOW + TOLERANCE + timedelta(seconds=1)}, "too old"),
    ],
)
def test_a_header_is_refused_for_a_wrong_secret_a_changed_body_or_age(change, reason):
    with pytest.raises(SignatureError):
        verify(partner_signature.sign(secret="s3cret", body=BODY, now=NOW), **change)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=abc,v1=abc", "t=1764417600"])
def test_a_header_without_a_time_or_a_digest_is_refused(header):
    with pytest.raises(SignatureError):
        verify(header)


def test_while_the_secret_rotates_either_of_two_digests_verifies():
    timestamp = int(NOW.timestamp())
    old = partner_signature.compute(secret="old", timestamp=timestamp, body=BODY)
    new = partner_signature.compute(secret="s3cret", timestamp=timestamp, body=BODY)
    verify(f"t={timestamp},v1={old},v1={new}")
