"""The beat sweep reads only the lines near a trigger, and still opens every renewal that is due."""
from datetime import timedelta

from django.utils import timezone

from renewals.models import Renewal
from renewals.services import lines_with_enabled_rules_ids, run_dispatcher
from tests.factories import GB, make_line
from tests.renewals.conftest import make_rule


def test_sweep_skips_rules_far_from_their_triggers_and_opens_the_near_one(customer, package, policy):
    now = timezone.now()
    far = make_line(owner=customer, data_remaining_bytes=5 * GB, expires_at=now + timedelta(days=20))
    near = make_line(owner=customer, data_remaining_bytes=5 * GB, expires_at=now + timedelta(hours=10))
    wide_but_far = make_line(owner=customer, data_remaining_bytes=5 * GB, expires_at=now + timedelta(hours=60))
    make_rule(line=far, package=package, trigger_data_below_mb=None, trigger_hours_before_expiry=24)
    make_rule(line=near, package=package, trigger_data_below_mb=None, trigger_hours_before_expiry=24)
    # A 72-hour rule widens the SQL horizon; the 24-hour rules inside it are still decided per rule.
    make_rule(line=wide_but_far, package=package, trigger_data_below_mb=None, trigger_hours_before_expiry=72)

    candidates = set(lines_with_enabled_rules_ids(now=now))
    assert far.pk not in candidates
    assert {near.pk, wide_but_far.pk} <= candidates

    report = run_dispatcher(now=now, enqueue=False)
    opened_lines = set(Renewal.objects.filter(pk__in=report.opened).values_list("line_id", flat=True))
    assert opened_lines == {near.pk, wide_but_far.pk}
