"""Looks for card numbers where none may be: every text, JSON and bytea column of every table in
the test database, and log lines. A hit is one of the test PANs the browser typed, or any
Luhn-valid 13-19 digit number that starts like a card (IIN 2-6)."""

import re

from django.db import connection

# The numbers the browser tests type into Stripe's element (README's test cards).
TEST_PANS = ("4242424242424242", "4000000000000002", "4000000000000341", "4000002500003155")
# Digit runs, also written in groups ("4242 4242 4242 4242", "4242-4242-..."). ICCIDs (18-20
# digits starting 89) and epoch timestamps (starting 1) never start with 2-6, so the IIN rule keeps
# them out without an exclusion list. A run glued to letters is part of a hash, a hex id or a
# token (a password hash's hex once held the Luhn-valid run 69840841365114), not a typed number.
CANDIDATE = re.compile(r"(?<![0-9A-Za-z])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z])")
SCANNED_TYPES = ("text", "character varying", "character", "json", "jsonb", "bytea")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_numbers_in(text: str) -> list[str]:
    found = [pan for pan in TEST_PANS if pan in text]
    for match in CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits) and digits not in found:
            found.append(digits)
    return found


def card_numbers_in_database() -> list[str]:
    """'table.column: number' for every hit in the public schema."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = ANY(%s) ORDER BY table_name, column_name",
            [list(SCANNED_TYPES)],
        )
        columns = cursor.fetchall()
        hits = []
        for table, column, data_type in columns:
            value = f"encode(\"{column}\", 'escape')" if data_type == "bytea" else f'"{column}"::text'
            cursor.execute(f'SELECT {value} FROM "{table}" WHERE "{column}" IS NOT NULL')
            for (text,) in cursor.fetchall():
                hits += [f"{table}.{column}: {number}" for number in card_numbers_in(text)]
    return hits


def card_numbers_in_lines(lines: list[str]) -> list[str]:
    return [f"{number} in log line: {line}" for line in lines for number in card_numbers_in(line)]
