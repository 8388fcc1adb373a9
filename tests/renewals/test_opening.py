"""Opening renewals as a set (docs/invariants.md, "Opening renewals"): many lines cost the same
statements as one, each line's own history and caps still decide for it alone, and two openers of
the same lines at once open each renewal once (the database's one-open-renewal constraint,
reached through INSERT … ON CONFLICT DO NOTHING)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Line
from payments.models import Charge
from renewals.models import Alert, Renewal, RenewalRule
from renewals.services import triggers
from tests.builders import MB, make_line, make_renewal, make_rule, make_user
from tests.partner.helpers import wait_until

NOW = timezone.now().replace(microsecond=0)

# The lines at a trigger (the widest expiry window, the lines), the retry policy, the rules, the
# savepoint and its release, each line's latest renewal, the daily-cap counts, the month's spend of
# capped lines, and the one INSERT: whatever the number of lines.
STATEMENTS_TO_OPEN_ANY_NUMBER = 10


def _crossing_lines(customer, package, count: int, **rule_fields) -> list[int]:
    """Lines 100 MB left under a 500 MB rule, each with last month's paid renewal (history the
    guards read) and a monthly cap with room (the month's spend is read)."""
    ids = []
    for _ in range(count):
        line = make_line(owner=customer, data_remaining_bytes=100 * MB)
        rule = make_rule(line=line, package=package, monthly_spend_cap_minor=10 * package.price_minor, **rule_fields)
        paid = make_renewal(
            line=line,
            package=package,
            rule=rule,
            status=Renewal.Status.SUCCEEDED,
            next_attempt_at=None,
            completed_at=NOW - timedelta(days=40),
        )
        Charge.objects.create(
            user=customer,
            line=line,
            renewal=paid,
            attempt=1,
            purpose=Charge.Purpose.RENEWAL,
            amount_minor=package.price_minor,
            currency=package.currency,
            status=Charge.Status.SUCCEEDED,
            idempotency_key=f"paid-{line.pk}",
            settled_at=NOW - timedelta(days=40),
        )
        ids.append(line.pk)
    return ids


@pytest.mark.django_db
def test_opening_forty_lines_costs_the_same_statements_as_opening_one(
    customer, package, policy, django_assert_max_num_queries
):
    one = _crossing_lines(customer, package, 1)
    forty = _crossing_lines(customer, package, 40)

    with CaptureQueriesContext(connection) as single:
        assert len(triggers.evaluate_triggers(line_ids=one, now=NOW, dispatch=False)) == 1
    with django_assert_max_num_queries(STATEMENTS_TO_OPEN_ANY_NUMBER), CaptureQueriesContext(connection) as many:
        opened = triggers.evaluate_triggers(line_ids=forty, now=NOW, dispatch=False)

    assert len(many) == len(single)
    assert sorted(renewal.line_id for renewal in opened) == sorted(forty)
    assert Renewal.objects.filter(line_id__in=forty, status=Renewal.Status.DUE).count() == 40
    # What the caller gets back are the rows as stored, with their ids.
    stored = {renewal.pk: renewal for renewal in Renewal.objects.filter(line_id__in=forty)}
    for renewal in opened:
        row = stored[renewal.pk]
        assert (row.line_id, row.rule_id, row.payer_id, row.amount_minor, row.currency, row.trigger) == (
            renewal.line_id,
            renewal.rule_id,
            customer.pk,
            package.price_minor,
            package.currency,
            "data",
        )


@pytest.mark.django_db
def test_in_one_batch_each_line_is_refused_or_opened_by_its_own_history_caps_and_owner(customer, package, policy):
    opens, also_opens = _crossing_lines(customer, package, 2)
    failed_cycle, cooling_down, daily_cap, monthly_cap, new_owner = _crossing_lines(customer, package, 5)
    make_renewal(
        line=Line.objects.get(pk=failed_cycle),
        package=package,
        status=Renewal.Status.FAILED,
        failures=3,
        next_attempt_at=None,
        completed_at=NOW - timedelta(days=3),
    )
    make_renewal(  # declined once ten minutes ago and cancelled: the policy waits 60 minutes
        line=Line.objects.get(pk=cooling_down),
        package=package,
        status=Renewal.Status.CANCELLED,
        failures=1,
        next_attempt_at=None,
        completed_at=NOW - timedelta(minutes=10),
    )
    for hours_ago in (3, 2):
        make_renewal(
            line=Line.objects.get(pk=daily_cap),
            package=package,
            status=Renewal.Status.SUCCEEDED,
            next_attempt_at=None,
            completed_at=NOW - timedelta(hours=hours_ago),
        )
    RenewalRule.objects.filter(line_id=monthly_cap).update(monthly_spend_cap_minor=package.price_minor - 1)
    RenewalRule.objects.filter(line_id=new_owner).update(owner=make_user())

    opened = triggers.evaluate_triggers(
        line_ids=[opens, failed_cycle, cooling_down, daily_cap, monthly_cap, new_owner, also_opens],
        now=NOW,
        dispatch=False,
    )

    assert sorted(renewal.line_id for renewal in opened) == sorted([opens, also_opens])
    assert set(Renewal.objects.filter(status__in=Renewal.OPEN).values_list("line_id", flat=True)) == {opens, also_opens}
    assert set(Alert.objects.values_list("line_id", "kind")) == {
        (daily_cap, Alert.Kind.RENEWAL_CAP_REACHED),
        (monthly_cap, Alert.Kind.SPEND_CAP_REACHED),
    }
    # The same lines an hour later: the cool-down is over, the others still refuse.
    later = triggers.evaluate_triggers(
        line_ids=[failed_cycle, cooling_down, daily_cap, monthly_cap, new_owner], now=NOW + timedelta(minutes=61)
    )
    assert [renewal.line_id for renewal in later] == [cooling_down]


def _waiting_to_insert_a_renewal() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND query LIKE 'INSERT INTO "renewals_renewal"%%'
            """
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_two_openers_of_the_same_lines_at_once_open_each_renewal_once(customer, package, policy):
    """The second opener reads its facts while the first's renewals are not yet committed, so both
    reach the INSERT for all ten lines; the second waits on the first's rows and, once they
    commit, inserts none. No savepoint, no error, no second open renewal."""
    from .test_concurrency import in_thread

    ids = _crossing_lines(customer, package, 10)
    first_inserted, first_may_commit = threading.Event(), threading.Event()

    def first():
        with transaction.atomic():
            opened = triggers.evaluate_triggers(line_ids=ids, now=NOW, dispatch=False)
            first_inserted.set()
            assert first_may_commit.wait(60)
        return opened

    def second():
        assert first_inserted.wait(60)
        return triggers.evaluate_triggers(line_ids=ids, now=NOW, dispatch=False)

    first_thread, first_box = in_thread(first)
    second_thread, second_box = in_thread(second)
    try:
        assert wait_until(_waiting_to_insert_a_renewal, timeout=60)
    finally:
        first_may_commit.set()
        first_thread.join(60)
        second_thread.join(60)
    assert "error" not in first_box and "error" not in second_box, (first_box, second_box)
    assert sorted(renewal.line_id for renewal in first_box["result"]) == sorted(ids)
    assert second_box["result"] == []
    assert Renewal.objects.filter(line_id__in=ids, status=Renewal.Status.DUE).count() == 10
