"""The reviewers' findings use the renewal fixtures."""

from tests.renewals.conftest import add_card, low_line, policy, rule  # noqa: F401
