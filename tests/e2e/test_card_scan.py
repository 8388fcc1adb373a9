"""The card-number scan that runs after every browser test (tests/e2e/conftest.py) finds a PAN
planted in a database column or a log line, and does not cry wolf at ICCIDs, timestamps or ids."""

import logging

from accounts.models import Line
from payments.models import Charge
from renewals.models import RetryPolicy
from tests.builders import make_line, make_user
from tests.e2e.card_scan import card_numbers_in, card_numbers_in_database, card_numbers_in_lines


def test_a_pan_planted_in_a_text_column_is_found(db):
    user = make_user(email="plant@example.com")
    Charge.objects.create(
        user=user,
        purpose=Charge.Purpose.PURCHASE,
        amount_minor=100,
        currency="CNY",
        idempotency_key="plant-1",
        failure_message="card 4000 0000 0000 0341 declined",
    )
    assert card_numbers_in_database() == ["payments_charge.failure_message: 4000000000000341"]


def test_a_luhn_valid_unknown_card_in_a_json_column_is_found(db):
    policy = RetryPolicy.current()
    policy.hard_decline_codes = [*policy.hard_decline_codes, "5555555555554444"]
    policy.save()
    hits = card_numbers_in_database()
    assert "renewals_retrypolicy.hard_decline_codes: 5555555555554444" in hits
    assert "accounts_changerecord.after: 5555555555554444" in hits  # the policy's change history


def test_a_pan_planted_in_a_log_line_is_found(tmp_path):
    path = tmp_path / "log"
    handler = logging.FileHandler(path)
    logger = logging.getLogger("payments.views")
    logger.addHandler(handler)
    try:
        logger.warning("binding failed number=%s", "4242424242424242")
    finally:
        logger.removeHandler(handler)
        handler.close()
    (hit,) = card_numbers_in_lines(path.read_text().splitlines())
    assert hit.startswith("4242424242424242 in log line")


def test_iccids_ids_and_times_are_not_card_numbers(db):
    make_line(owner=None, iccid="89860012345678901245")
    assert card_numbers_in_database() == []
    assert (
        card_numbers_in("8986001234567890123 89860012345678901245 1764000000000 pi_4242424242 2026-11-24 13:58:11")
        == []
    )
    assert card_numbers_in("4242424242424241") == []  # fails the Luhn check
    assert card_numbers_in("md5$Xq3$0ab69840841365114fe") == []  # hex of a password hash
    assert card_numbers_in("card=4000000000000077;") == ["4000000000000077"]
    assert Line.objects.count() == 1
