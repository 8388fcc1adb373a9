"""Renewal fixtures: a line with an enabled rule, and a small policy so retries are minutes apart."""
import pytest

from renewals.models import RenewalRule, RetryPolicy
from tests.factories import MB


def make_rule(*, line, package, **fields) -> RenewalRule:
    defaults = {
        "enabled": True,
        "trigger_data_below_mb": 500,
        "max_renewals_per_day": 2,
        "overage_policy": RenewalRule.OveragePolicy.BLOCK,
    }
    defaults.update(fields)
    return RenewalRule.objects.create(line=line, package=package, **defaults)


@pytest.fixture
def policy(db):
    policy = RetryPolicy.current()
    policy.retry_delays_minutes = [60, 360, 1440]
    policy.alert_after_failures = 3
    policy.save()
    return policy


@pytest.fixture
def low_line(line):
    """The customer's line, 100 MB left: below a 500 MB threshold."""
    line.data_remaining_bytes = 100 * MB
    line.save()
    return line


@pytest.fixture
def rule(low_line, package, policy):
    return make_rule(line=low_line, package=package)
