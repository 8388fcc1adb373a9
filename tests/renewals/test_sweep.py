"""The beat sweep reads only the lines near a trigger, and still opens every renewal that is due."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Line
from accounts.services import apply_package
from partner.services.usage import UsageInput, ingest_usage
from renewals.models import Renewal, RenewalRule
from renewals.selectors import lines_with_enabled_rules_ids
from renewals.services.dispatcher import run_dispatcher
from renewals.services.operator import cancel_renewal
from renewals.services.rules import save_rule, turn_off_rule
from tests.builders import GB, MB, make_line, make_rule


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


# --- the line's copies of its rule's triggers stay in step with every write ----------------------
# The sweep reads Line.renew_below_bytes / renew_hours_before_expiry (kept by database triggers),
# so each way a rule or a line's data changes must leave it finding exactly the lines it should.


def _candidates(now=None) -> set[int]:
    return set(lines_with_enabled_rules_ids(now=now or timezone.now()))


def _rule_values(package, **fields) -> dict:
    values = {
        "enabled": True,
        "package": package,
        "trigger_data_below_mb": 500,
        "trigger_hours_before_expiry": None,
        "overage_policy": "block",
        "overage_cap_mb": None,
        "max_renewals_per_day": 2,
        "monthly_spend_cap_minor": None,
        "payment_method_id": "",
    }
    values.update(fields)
    return values


def test_the_rule_service_keeps_the_sweep_in_step(customer, package, policy):
    now = timezone.now()
    line = make_line(owner=customer, data_remaining_bytes=300 * MB)
    save_rule(line=line, values=_rule_values(package, trigger_data_below_mb=200), now=now)
    assert line.pk not in _candidates()

    # Raising the threshold above the data renews at once (save_rule's own evaluation reads the same copies).
    save_rule(line=line, values=_rule_values(package, trigger_data_below_mb=400), now=now)
    opened = Renewal.objects.get(line=line)
    assert opened.status == Renewal.Status.DUE and opened.trigger == "data"

    # Off: the open renewal is cancelled and the line leaves the sweep for good.
    turn_off_rule(rule=line.renewal_rule, now=now)
    assert Renewal.objects.get(line=line).status == Renewal.Status.CANCELLED
    assert line.pk not in _candidates()
    assert not run_dispatcher(now=now, enqueue=False).opened

    # On again with a threshold below the data: not a candidate; then an expiry trigger that is met.
    save_rule(line=line, values=_rule_values(package, trigger_data_below_mb=100), now=now)
    assert line.pk not in _candidates()
    line.refresh_from_db()
    save_rule(
        line=line,
        values=_rule_values(
            package, trigger_data_below_mb=None, trigger_hours_before_expiry=(line.expires_at - now).days * 24 + 48
        ),
        now=now,
    )
    assert Renewal.objects.filter(line=line, status=Renewal.Status.DUE, trigger="expiry").exists()


def test_writes_that_bypass_the_rule_service_keep_the_sweep_in_step(customer, package, policy):
    """The admin's bulk edits use update(), imports and fixtures create rows directly: the
    database, not the service, keeps the copies."""
    now = timezone.now()
    low = make_line(owner=customer, data_remaining_bytes=300 * MB)
    other = make_line(owner=customer, data_remaining_bytes=300 * MB)
    stale_low = Line.objects.get(pk=low.pk)  # loaded before its rule exists
    rule = make_rule(line=low, package=package, trigger_data_below_mb=200)
    make_rule(line=other, package=package, trigger_data_below_mb=200)
    assert not _candidates() & {low.pk, other.pk}

    RenewalRule.objects.filter(pk=rule.pk).update(trigger_data_below_mb=400)
    assert low.pk in _candidates() and other.pk not in _candidates()

    # Line.save() writes every column: a copy loaded before the rule change must not win.
    stale_low.label = "Tablet"
    stale_low.save()
    assert low.pk in _candidates()

    RenewalRule.objects.filter(line__owner=customer).update(enabled=False)
    assert not _candidates() & {low.pk, other.pk}
    RenewalRule.objects.filter(line__owner=customer).update(enabled=True, trigger_data_below_mb=1000)
    assert _candidates() >= {low.pk, other.pk}
    RenewalRule.objects.filter(pk=rule.pk).delete()
    assert low.pk not in _candidates() and other.pk in _candidates()

    report = run_dispatcher(now=now, enqueue=False)
    assert set(Renewal.objects.filter(pk__in=report.opened).values_list("line_id", flat=True)) == {other.pk}


def test_a_usage_batch_and_a_package_move_lines_in_and_out_of_the_sweep(customer, package, policy):
    now = timezone.now()
    crossing = make_line(owner=customer, package=package, data_remaining_bytes=600 * MB)
    staying = make_line(owner=customer, package=package, data_remaining_bytes=600 * MB)
    make_rule(line=crossing, package=package, trigger_data_below_mb=500)
    make_rule(line=staying, package=package, trigger_data_below_mb=500)
    batch = [
        UsageInput(
            index=0,
            partner_record_id="u-1",
            iccid=crossing.iccid,
            bytes=200 * MB,
            start=now - timedelta(minutes=10),
            end=now,
        ),
        UsageInput(
            index=1,
            partner_record_id="u-2",
            iccid=staying.iccid,
            bytes=50 * MB,
            start=now - timedelta(minutes=10),
            end=now,
        ),
    ]
    ingest_usage(records=batch, now=now)
    # The batch opened the crossing line's renewal itself; while it is open the sweep leaves the line alone.
    renewal = Renewal.objects.get(line=crossing)
    assert crossing.pk not in _candidates() and staying.pk not in _candidates()

    # The renewal goes (an operator cancels it): the line is still at its trigger, the sweep opens a new one.
    cancel_renewal(renewal_id=renewal.pk, now=now)
    assert _candidates() & {crossing.pk, staying.pk} == {crossing.pk}

    # A package (bought by hand) lifts the data above the threshold: out of the sweep.
    with transaction.atomic():
        apply_package(line=Line.objects.select_for_update().get(pk=crossing.pk), package=package, now=now)
    assert crossing.pk not in _candidates()
    assert not run_dispatcher(now=now, enqueue=False).opened
