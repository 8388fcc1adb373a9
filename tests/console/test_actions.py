"""Every operator action asks first, calls the owning app's service and writes who / when / why."""

from datetime import UTC

from django.core import mail

from accounts.models import ChangeRecord, Line, NetworkCommand
from accounts.tasks import send_notices
from payments import gateways
from payments.models import Charge
from payments.services import recording
from payments.services import refunds as payments_refunds
from tests.builders import make_charge, make_renewal, make_rule, make_user
from tests.console.conftest import run_action
from tests.payments.conftest import create_card


def test_suspend_asks_for_a_reason_then_sends_the_command_and_records_it(finance_client, line):
    client, user = finance_client
    first, confirmed = run_action(client, "/admin/accounts/line/", "suspend_lines", [line.pk], reason="")
    assert "Please confirm" in first.content.decode()
    assert confirmed.status_code == 200  # the reason is required: the page comes back
    line.refresh_from_db()
    assert line.status == Line.Status.ACTIVE and not NetworkCommand.objects.exists()

    _first, confirmed = run_action(client, "/admin/accounts/line/", "suspend_lines", [line.pk], reason="fraud check")
    assert confirmed.status_code == 302
    line.refresh_from_db()
    assert line.status == Line.Status.SUSPENDED
    command = NetworkCommand.objects.get(line=line)
    assert (command.command, command.reason) == ("suspend", "fraud check")
    record = ChangeRecord.objects.get(action="suspended")
    assert (record.actor, record.reason, record.before, record.after) == (
        user,
        "fraud check",
        {"status": "active"},
        {"status": "suspended"},
    )
    page = client.get(f"/admin/accounts/line/{line.pk}/change/").content.decode()
    assert "fraud check" in page and user.email in page


def test_terminating_a_line_asks_for_a_reason_ends_its_service_and_cannot_be_resumed(
    finance_client, line, package, django_capture_on_commit_callbacks
):
    client, user = finance_client
    rule = make_rule(line=line, package=package)
    with django_capture_on_commit_callbacks(execute=True):
        _first, confirmed = run_action(
            client, "/admin/accounts/line/", "terminate_lines", [line.pk], reason="contract ended"
        )
    assert confirmed.status_code == 302
    line.refresh_from_db()
    assert line.status == Line.Status.TERMINATED
    assert [(c.command, c.reason) for c in NetworkCommand.objects.filter(line=line)] == [("suspend", "contract ended")]
    record = ChangeRecord.objects.get(action="terminated")
    assert (record.actor, record.reason, record.after) == (user, "contract ended", {"status": "terminated"})
    rule.refresh_from_db()
    assert not rule.enabled  # the customer's auto-renewal page says nothing will renew

    _first, confirmed = run_action(client, "/admin/accounts/line/", "resume_lines", [line.pk], reason="changed my mind")
    line.refresh_from_db()
    assert line.status == Line.Status.TERMINATED and NetworkCommand.objects.filter(line=line).count() == 1


def test_support_resumes_a_suspended_line(support_client, line):
    client, user = support_client
    Line.objects.filter(pk=line.pk).update(status=Line.Status.SUSPENDED)
    assert "suspend_lines" not in client.get("/admin/accounts/line/").content.decode()  # support may not suspend
    _first, confirmed = run_action(
        client, "/admin/accounts/line/", "resume_lines", [line.pk], reason="customer paid by phone"
    )
    assert confirmed.status_code == 302
    line.refresh_from_db()
    assert line.status == Line.Status.ACTIVE
    assert NetworkCommand.objects.get(line=line).command == "resume"
    assert ChangeRecord.objects.get(action="resumed").actor == user


def test_cancel_renewal_is_recorded(support_client, line, package):
    client, user = support_client
    renewal = make_renewal(line=line, package=package, status="retry_scheduled")
    _first, confirmed = run_action(
        client, "/admin/renewals/renewal/", "cancel_confirmed", [renewal.pk], reason="duplicate"
    )
    assert confirmed.status_code == 302
    renewal.refresh_from_db()
    assert renewal.status == "cancelled"
    record = ChangeRecord.objects.get(action="cancelled")
    assert (record.actor, record.reason, record.before["status"], record.after["status"]) == (
        user,
        "duplicate",
        "retry_scheduled",
        "cancelled",
    )


def test_refund_through_stripe_shows_in_the_ledger_and_history(finance_client, customer, line, package):
    client, user = finance_client
    stripe_customer = gateways.ensure_customer(customer)
    method = gateways.attach_payment_method(customer_id=stripe_customer.id, payment_method_id=create_card())
    charge = make_charge(user=customer, line=line, package=package)
    outcome = gateways.charge_off_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=method.id)
    charge = recording.record_outcome(charge_id=charge.pk, outcome=outcome)
    assert charge.status == Charge.Status.SUCCEEDED
    first, confirmed = run_action(client, "/admin/payments/charge/", "refund_confirmed", [charge.pk], reason="goodwill")
    assert "cannot be undone" in first.content.decode()
    assert confirmed.status_code == 302
    charge.refresh_from_db()
    assert (charge.status, charge.refunded_minor) == (Charge.Status.REFUNDED, 9800)
    record = ChangeRecord.objects.get(action="refunded")
    assert (record.actor, record.reason, record.after["refunded_minor"]) == (user, "goodwill", 9800)
    page = client.get(f"/admin/payments/charge/{charge.pk}/change/").content.decode()
    assert "goodwill" in page and user.email in page


def test_resend_verification_email(support_client):
    client, user = support_client
    unverified = make_user(email="late@example.com", verified=False)
    mail.outbox.clear()
    _first, confirmed = run_action(client, "/admin/accounts/user/", "resend_verification_email", [unverified.pk])
    assert confirmed.status_code == 302
    assert [message.to for message in mail.outbox] == [["late@example.com"]]
    assert ChangeRecord.objects.get(action="verification_email_sent").actor == user
    assert "verification_email_sent" in client.get(f"/admin/accounts/user/{unverified.pk}/change/").content.decode()


def test_resend_pay_now_email(support_client, customer, line, package):
    client, user = support_client
    renewal = make_renewal(line=line, package=package, status="requires_action")
    mail.outbox.clear()
    _first, confirmed = run_action(client, "/admin/renewals/renewal/", "resend_pay_now_email", [renewal.pk])
    assert confirmed.status_code == 302
    assert mail.outbox == []  # owed by the action, sent by the notice task (never inside the request)
    send_notices.apply()
    assert [message.to for message in mail.outbox] == [[customer.email]]
    assert f"/{renewal.pk}/" in mail.outbox[0].body
    assert ChangeRecord.objects.get(action="pay_now_email_sent").actor == user


def test_customer_page_shows_lines_rules_renewals_charges_and_method_summaries(support_client, customer, line, package):
    from tests.builders import make_rule

    client, _user = support_client
    stripe_customer = gateways.ensure_customer(customer)
    method = gateways.attach_payment_method(
        customer_id=stripe_customer.id, payment_method_id=create_card("4000056655665556")
    )
    make_rule(line=line, package=package)
    make_renewal(line=line, package=package, status="retry_scheduled", last_failure_code="insufficient_funds")
    make_charge(
        user=customer,
        line=line,
        package=package,
        status=Charge.Status.FAILED,
        failure_message="Your card has insufficient funds.",
    )
    page = client.get(f"/admin/accounts/user/{customer.pk}/change/").content.decode()
    assert line.iccid in page and "insufficient_funds" in page and "Your card has insufficient funds." in page
    assert "5556" in page and "4000056655665556" not in page
    assert method.id  # the summary comes from dj-stripe's mirror


def test_find_a_customer_by_iccid_and_by_payment_intent(support_client, customer, line, package):
    client, _user = support_client
    make_user(email="someone-else@example.com")
    make_charge(user=customer, line=line, package=package, payment_intent_id="pi_findme123")
    for term in (line.iccid, "pi_findme123", "alice@"):
        page = client.get("/admin/accounts/user/", {"q": term}).content.decode()
        assert "alice@example.com" in page and "someone-else@example.com" not in page, term


def test_resolving_an_alert_asks_first_and_records_who(support_client, line):
    from django.utils import timezone

    from renewals.models import Alert
    from renewals.services.alerts import raise_alert

    client, operator = support_client
    alert = raise_alert(kind=Alert.Kind.REPEATED_FAILURES, line=line, message="3 declines in a row", now=timezone.now())
    first, confirmed = run_action(
        client, "/admin/renewals/alert/", "resolve_confirmed", [alert.pk], reason="customer called, new card on file"
    )
    assert str(alert).encode() in first.content  # the confirmation page names what is resolved
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    record = ChangeRecord.objects.get(action="resolved", object_id=str(alert.pk))
    assert (record.actor, record.reason) == (operator, "customer called, new card on file")
    # Choosing the action alone changes nothing: a second alert stays open until confirmed.
    second = raise_alert(kind=Alert.Kind.REPEATED_FAILURES, line=line, message="again", now=timezone.now())
    client.post(
        "/admin/renewals/alert/", {"action": "resolve_confirmed", "_selected_action": [str(second.pk)], "index": 0}
    )
    second.refresh_from_db()
    assert second.resolved_at is None


def test_retrying_a_network_command_asks_first_and_records_who(support_client, line):
    from accounts.services.network import enqueue_command

    client, operator = support_client
    command = enqueue_command(line=line, command="suspend")
    NetworkCommand.objects.filter(pk=command.pk).update(status=NetworkCommand.Status.FAILED, attempts=8)
    client.post(
        "/admin/accounts/networkcommand/",
        {"action": "retry_now_confirmed", "_selected_action": [str(command.pk)], "index": 0},
    )
    command.refresh_from_db()
    assert command.status == NetworkCommand.Status.FAILED  # only asked so far
    _first, confirmed = run_action(
        client,
        "/admin/accounts/networkcommand/",
        "retry_now_confirmed",
        [command.pk],
        reason="partner fixed their endpoint",
    )
    command.refresh_from_db()
    assert (command.status, command.attempts) == (NetworkCommand.Status.PENDING, 0)
    record = ChangeRecord.objects.get(action="retry_now", object_id=str(command.pk))
    assert record.actor == operator and record.before["status"] == "failed"


def _paid_twice(customer, line, package):
    """A renewal the engine saw paid twice: the second success is kept on the ledger as
    `refund_due` with an alert (renewals.services.outcomes._refund_paid_too_late); its automatic refund runs
    after the commit, which this test never lets happen (as when the process died or the processor
    did not answer), so the operator makes it."""
    from django.utils import timezone

    from renewals.services.outcomes import record_charge_outcome

    stripe_customer = gateways.ensure_customer(customer)
    method = gateways.attach_payment_method(customer_id=stripe_customer.id, payment_method_id=create_card())
    renewal = make_renewal(line=line, package=package, status="succeeded")
    make_charge(
        user=customer,
        line=line,
        package=package,
        renewal=renewal,
        attempt=1,
        status=Charge.Status.SUCCEEDED,
        payment_intent_id="pi_first_payment",
    )
    second = make_charge(user=customer, line=line, package=package, renewal=renewal, attempt=2)
    outcome = gateways.charge_off_session(charge=second, customer_id=stripe_customer.id, payment_method_id=method.id)
    record_charge_outcome(charge_id=second.pk, outcome=outcome, now=timezone.now())
    second.refresh_from_db()
    assert (second.status, second.failure_code) == (Charge.Status.REFUND_DUE, "paid_after_closed")
    return second


def test_a_duplicate_payment_is_refunded_through_the_refund_action_with_history(
    finance_client, customer, line, package
):
    import stripe
    from django.conf import settings

    client, user = finance_client
    duplicate = _paid_twice(customer, line, package)
    first, confirmed = run_action(
        client, "/admin/payments/charge/", "refund_confirmed", [duplicate.pk], reason="paid twice"
    )
    assert "cannot be undone" in first.content.decode()
    assert confirmed.status_code == 302
    duplicate.refresh_from_db()
    assert duplicate.refunded_minor == duplicate.amount_minor == 9800
    intent = stripe.PaymentIntent.retrieve(duplicate.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY)
    paid = intent["latest_charge"]  # localstripe answers with the object, Stripe with its id
    if isinstance(paid, str):
        paid = stripe.Charge.retrieve(paid, api_key=settings.STRIPE_SECRET_KEY)
    assert paid["amount_refunded"] == 9800  # the money went back
    record = ChangeRecord.objects.get(action="refunded", object_id=str(duplicate.pk))
    assert (record.actor, record.reason, record.before["refunded_minor"], record.after["refunded_minor"]) == (
        user,
        "paid twice",
        0,
        9800,
    )
    assert duplicate.status == Charge.Status.REFUNDED
    # Once refunded, a second confirmation, or the engine's own sweep, refunds nothing more.
    run_action(client, "/admin/payments/charge/", "refund_confirmed", [duplicate.pk], reason="again")
    assert ChangeRecord.objects.filter(action="refunded", object_id=str(duplicate.pk)).count() == 1
    assert payments_refunds.refund_due_charges() == []
    refunds = stripe.Refund.list(payment_intent=duplicate.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY)
    assert [refund["amount"] for refund in refunds.auto_paging_iter()] == [9800]


def test_an_ordinary_failed_payment_is_still_not_refundable(finance_client, customer, line, package):
    client, _user = finance_client
    failed = make_charge(
        user=customer,
        line=line,
        package=package,
        status=Charge.Status.FAILED,
        failure_code="card_declined",
        payment_intent_id="pi_declined",
    )
    _first, confirmed = run_action(client, "/admin/payments/charge/", "refund_confirmed", [failed.pk], reason="x")
    assert "Only a succeeded payment can be refunded." in client.get("/admin/payments/charge/").content.decode()
    failed.refresh_from_db()
    assert failed.refunded_minor == 0 and not ChangeRecord.objects.filter(action="refunded").exists()


def test_resend_pay_now_email_sends_the_email_for_the_renewals_state_now(support_client, customer, line, package):
    from datetime import datetime

    client, _user = support_client
    waiting = make_renewal(
        line=line,
        package=package,
        status="awaiting_method",
        next_attempt_at=None,
        last_failure_code="no_payment_method",
    )
    mail.outbox.clear()
    _first, confirmed = run_action(client, "/admin/renewals/renewal/", "resend_pay_now_email", [waiting.pk])
    assert confirmed.status_code == 302
    send_notices.apply()
    [message] = mail.outbox
    assert message.subject == f"The renewal of line {line.iccid} needs your action"
    assert "try again" not in message.body and f"/{waiting.pk}/pay/" in message.body
    waiting.status = "cancelled"
    waiting.save()
    retrying = make_renewal(
        line=line, package=package, status="retry_scheduled", next_attempt_at=datetime(2026, 11, 24, 19, 2, tzinfo=UTC)
    )
    mail.outbox.clear()
    run_action(client, "/admin/renewals/renewal/", "resend_pay_now_email", [retrying.pk])
    send_notices.apply()
    [message] = mail.outbox
    assert "We will try again on Nov 24, 2026, 19:02." in message.body
