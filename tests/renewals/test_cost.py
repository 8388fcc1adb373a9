"""What one renewal costs the engine: the SQL statements of a successful off-session renewal, from
the claim to `succeeded` (bench 4's per-renewal cost), and the customer's email, which is sent by
the notice task (accounts.send_notices) after the charge committed, once however often that task runs."""

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Notice
from accounts.tasks import send_notices
from renewals.models import Renewal, RetryPolicy
from renewals.services import charging, dispatcher
from tests.builders import MB, make_line, make_renewal, make_rule

from .test_charging import claimed

# Measured: 38 before (bench/RESULTS.md, finding 6), 19 after, 18 now, of which 4 are the two
# transactions' savepoints (BEGIN/COMMIT outside the test's transaction). The gateway no longer
# re-reads the method's type: the charge step hands it the type it read with the method
# (docs/performance-renewals.md).
STATEMENTS_PER_RENEWAL = 18


def test_a_successful_renewal_costs_at_most_18_statements_and_sends_no_email_itself(
    rule, add_card, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    with django_assert_max_num_queries(STATEMENTS_PER_RENEWAL), django_capture_on_commit_callbacks(execute=True):
        renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert mail.outbox == []  # the charge path only owes the email
    [notice] = Notice.objects.filter(line=renewal.line)
    assert notice.kind == "renewal_succeeded" and notice.status == "pending" and notice.sent_at is None


def test_the_email_task_delivered_twice_sends_one_email_in_the_customers_language(
    rule, add_card, customer, django_capture_on_commit_callbacks
):
    customer.language = "zh-hans"
    customer.save()
    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    with django_capture_on_commit_callbacks(execute=True):
        charging.charge_renewal(renewal_id=renewal.pk, now=now)
    notice = Notice.objects.get(line=renewal.line)
    assert send_notices.apply().get() == 1
    assert send_notices.apply().get() == 0
    [message] = mail.outbox
    assert message.to == [customer.email] and message.subject == f"eSIM {rule.line.iccid} 已续费"
    notice.refresh_from_db()
    assert notice.status == "sent" and notice.sent_at is not None


# A beat tick of the dispatcher (services.run_dispatcher) that claims due renewals, whatever their
# number. The sweep: the widest expiry window and the lines at a trigger, twice (the beat's sweep,
# then the check for rules to turn off); the retry policy; stuck and stale charges, abandoned
# authentications, terminated lines' renewals; the lost-claims requeue and the claim (SELECT …
# FOR UPDATE SKIP LOCKED, one UPDATE of the batch), each in a savepoint; the heartbeat upsert; and
# (27th, added with self-closing alerts, docs/console.md) one SELECT of the open failure alerts with
# their line and renewal joined, whatever the number of renewals. The pass's timing metric costs
# no query.
DISPATCHER_TICK_QUERIES = 27
# A tick that opens renewals pays the same 9 statements more whether it opens one renewal or
# twenty (set-based opening, docs/invariants.md "Opening renewals"): the lines at a trigger again
# for the given ids (2), the retry policy, the candidates' rules with their lines and packages, the
# transaction around the opening (savepoint and release), each line's latest renewal (one window
# query), the daily-cap counts (one grouped query), and one INSERT … ON CONFLICT DO NOTHING of
# every renewal. Before, it was 6 + 5 per renewal opened (bench/notes/burst.md).
QUERIES_TO_OPEN_ANY_NUMBER = 9


@pytest.mark.parametrize("due", [1, 20])
def test_a_dispatcher_tick_claims_one_due_renewal_or_twenty_for_the_same_exact_queries(
    customer, package, due, django_assert_num_queries
):
    for _ in range(due):
        line = make_line(owner=customer, package=package, data_remaining_bytes=100 * MB)
        make_renewal(line=line, package=package, rule=make_rule(line=line, package=package))
    RetryPolicy.current()  # created on first use: not part of a tick's cost
    with django_assert_num_queries(DISPATCHER_TICK_QUERIES):
        report = dispatcher.run_dispatcher(now=timezone.now(), enqueue=False)
    assert (len(report.opened), len(report.claimed)) == (0, due)


@pytest.mark.parametrize("due", [1, 20])
def test_a_dispatcher_tick_that_opens_one_renewal_or_twenty_costs_the_same_queries_more(
    customer, package, due, django_assert_num_queries
):
    for _ in range(due):
        line = make_line(owner=customer, package=package, data_remaining_bytes=100 * MB)
        make_rule(line=line, package=package)
    RetryPolicy.current()
    with django_assert_num_queries(DISPATCHER_TICK_QUERIES + QUERIES_TO_OPEN_ANY_NUMBER):
        report = dispatcher.run_dispatcher(now=timezone.now(), enqueue=False)
    assert (len(report.opened), len(report.claimed)) == (due, due)
