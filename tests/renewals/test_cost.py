"""What one renewal costs the engine: the SQL statements of a successful off-session renewal, from
the claim to `succeeded` (bench 4's per-renewal cost), and the customer's email, which is sent by
the notice task (accounts.send_notices) after the charge committed, once however often that task runs."""
from django.core import mail
from django.utils import timezone

from renewals import services
from accounts.models import Notice
from accounts.tasks import send_notices
from renewals.models import Renewal

from .test_charging import claimed

# Measured: 38 before (bench/RESULTS.md, finding 6), 19 now, of which 4 are the two transactions'
# savepoints (BEGIN/COMMIT outside the test's transaction) and 1 is the gateway's method-type read.
STATEMENTS_PER_RENEWAL = 19


def test_a_successful_renewal_costs_at_most_19_statements_and_sends_no_email_itself(
        rule, add_card, django_assert_max_num_queries, django_capture_on_commit_callbacks):
    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    with django_assert_max_num_queries(STATEMENTS_PER_RENEWAL), django_capture_on_commit_callbacks(execute=True):
        renewal = services.charge_renewal(renewal_id=renewal.pk, now=now)
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert mail.outbox == []  # the charge path only owes the email
    [notice] = Notice.objects.filter(line=renewal.line)
    assert notice.kind == "renewal_succeeded" and notice.status == "pending" and notice.sent_at is None


def test_the_email_task_delivered_twice_sends_one_email_in_the_customers_language(
        rule, add_card, customer, django_capture_on_commit_callbacks):
    customer.language = "zh-hans"
    customer.save()
    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    with django_capture_on_commit_callbacks(execute=True):
        services.charge_renewal(renewal_id=renewal.pk, now=now)
    notice = Notice.objects.get(line=renewal.line)
    assert send_notices.apply().get() == 1
    assert send_notices.apply().get() == 0
    [message] = mail.outbox
    assert message.to == [customer.email] and message.subject == f"线路 {rule.line.iccid} 已续费"
    notice.refresh_from_db()
    assert notice.status == "sent" and notice.sent_at is not None
