"""Buying a package on-session from a line's page, and paying a renewal now, against localstripe."""

import csv
import io
from datetime import timedelta

import pytest
import stripe
from django.urls import reverse
from django.utils import timezone

from accounts.models import Line
from payments.models import Charge
from renewals.models import Renewal, RenewalRule
from tests.builders import make_line, make_package
from tests.payments.conftest import authenticate_as_browser


def methods_of(user):
    from payments.selectors import payment_methods_for_user

    return payment_methods_for_user(user)


def buy(client, line, package, method_id):
    return client.post(reverse("payments:buy", args=[line.pk]), {"package": package.pk, "payment_method": method_id})


def test_buy_with_a_good_card_applies_the_package_and_shows_in_history_and_csv(
    customer, customer_client, bind_card, line, package
):
    bind_card("4242424242424242")
    (method,) = methods_of(customer)
    before = Line.objects.get(pk=line.pk)
    page = customer_client.get(reverse("payments:buy", args=[line.pk]))
    assert page.status_code == 200 and "Visa •••• 4242" in page.content.decode() and "CN¥98.00" in page.content.decode()

    response = buy(customer_client, line, package, method.id)

    charge = Charge.objects.get(user=customer)
    assert response.status_code == 302 and response["Location"] == reverse("payments:receipt", args=[charge.pk])
    assert charge.status == Charge.Status.SUCCEEDED and charge.purpose == Charge.Purpose.PURCHASE
    assert (charge.amount_minor, charge.currency) == (9800, "CNY")
    assert charge.payment_method_summary == "Visa •••• 4242"
    intent = stripe.PaymentIntent.retrieve(charge.payment_intent_id)
    assert (
        intent["status"] == "succeeded"
        and intent["amount"] == 9800
        and intent["metadata"]["charge_id"] == str(charge.pk)
    )
    line.refresh_from_db()
    assert line.data_remaining_bytes == before.data_remaining_bytes + package.data_allowance_bytes
    # Validity: max(current end, now + 30 days); the line had 10 days left.
    assert abs(line.expires_at - (charge.settled_at + timedelta(days=30))) < timedelta(seconds=5)
    assert line.package_id == package.pk

    receipt = customer_client.get(response["Location"]).content.decode()
    assert "CN¥98.00" in receipt and charge.payment_intent_id in receipt
    history = customer_client.get(reverse("payments:history")).content.decode()
    assert f'data-charge-id="{charge.pk}"' in history and "CN¥98.00" in history and "Succeeded" in history
    exported = customer_client.get(reverse("payments:history_csv"))
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert rows[0][0] == "Date" and len(rows) == 2
    assert rows[1][1] == line.iccid and rows[1][4] == "98.00" and rows[1][5] == "CNY" and rows[1][7] == "Succeeded"


def test_buy_with_a_card_declined_at_charge_fails_with_the_reason_and_changes_nothing(
    customer, customer_client, bind_card, line, package
):
    bind_card("4000000000000341")  # attaches fine, declines when charged
    (method,) = methods_of(customer)
    before = Line.objects.get(pk=line.pk)
    response = buy(customer_client, line, package, method.id)
    assert response.status_code == 302 and response["Location"] == reverse("payments:buy", args=[line.pk])
    followed = customer_client.get(response["Location"]).content.decode()
    assert "The payment failed: Your card was declined." in followed
    charge = Charge.objects.get(user=customer)
    assert charge.status == Charge.Status.FAILED
    assert charge.failure_code == "card_declined" and charge.decline_kind == Charge.DeclineKind.SOFT
    assert charge.payment_intent_id
    line.refresh_from_db()
    assert (line.data_remaining_bytes, line.expires_at, line.package_id) == (
        before.data_remaining_bytes,
        before.expires_at,
        before.package_id,
    )
    history = customer_client.get(reverse("payments:history")).content.decode()
    assert "Failed" in history and "Your card was declined." in history
    assert customer_client.get(reverse("payments:receipt", args=[charge.pk])).status_code == 404


def test_three_d_secure_purchase_waits_for_the_bank_then_applies_the_package(
    customer, customer_client, bind_card, line, package
):
    bind_card("4000002500003155")
    (method,) = methods_of(customer)
    before = Line.objects.get(pk=line.pk)
    response = buy(customer_client, line, package, method.id)
    charge = Charge.objects.get(user=customer)
    assert response["Location"] == reverse("payments:authenticate", args=[charge.pk])
    assert charge.status == Charge.Status.REQUIRES_ACTION
    line.refresh_from_db()
    assert line.data_remaining_bytes == before.data_remaining_bytes
    page = customer_client.get(response["Location"])
    assert page.status_code == 200
    secret = page.context["client_secret"]
    assert authenticate_as_browser(charge.payment_intent_id, secret, success=True).status_code == 200
    done = customer_client.post(reverse("payments:complete", args=[charge.pk]))
    assert done["Location"] == reverse("payments:receipt", args=[charge.pk])
    charge.refresh_from_db()
    line.refresh_from_db()
    assert charge.status == Charge.Status.SUCCEEDED
    assert line.data_remaining_bytes == before.data_remaining_bytes + package.data_allowance_bytes
    # The browser's return twice (reload) applies nothing twice.
    customer_client.post(reverse("payments:complete", args=[charge.pk]))
    line.refresh_from_db()
    assert line.data_remaining_bytes == before.data_remaining_bytes + package.data_allowance_bytes


def test_failed_three_d_secure_fails_the_purchase(customer, customer_client, bind_card, line, package):
    bind_card("4000002500003155")
    (method,) = methods_of(customer)
    buy(customer_client, line, package, method.id)
    charge = Charge.objects.get(user=customer)
    secret = customer_client.get(reverse("payments:authenticate", args=[charge.pk])).context["client_secret"]
    authenticate_as_browser(charge.payment_intent_id, secret, success=False)
    done = customer_client.post(reverse("payments:complete", args=[charge.pk]))
    assert done["Location"] == reverse("payments:buy", args=[line.pk])
    charge.refresh_from_db()
    assert charge.status == Charge.Status.FAILED and charge.failure_code == "payment_intent_authentication_failure"
    assert "authentication was not completed" in customer_client.get(done["Location"]).content.decode()


def test_a_purchase_paid_after_its_line_was_terminated_is_refunded_once_with_an_operator_alert(
    customer, customer_client, bind_card, line, package, django_capture_on_commit_callbacks
):
    """Money case 10: recorded as succeeded, the package silently not applied, the money kept."""
    from accounts.services.line_status import terminate_line
    from payments.services import on_session
    from payments.services import refunds as payments_refunds
    from renewals.models import Alert

    bind_card("4000002500003155")
    (method,) = methods_of(customer)
    buy(customer_client, line, package, method.id)
    charge = Charge.objects.get(user=customer)
    secret = customer_client.get(reverse("payments:authenticate", args=[charge.pk])).context["client_secret"]
    assert terminate_line(line_id=line.pk, reason="contract ended", actor=None, now=timezone.now())
    before = Line.objects.get(pk=line.pk)
    authenticate_as_browser(charge.payment_intent_id, secret, success=True)  # the customer's tab, still open

    with django_capture_on_commit_callbacks(execute=True):
        done = customer_client.post(reverse("payments:complete", args=[charge.pk]))
    on_session.complete_authentication(user=customer, charge_id=charge.pk)  # a reload: nothing again
    assert payments_refunds.refund_due_charges() == []

    charge.refresh_from_db()
    assert charge.status == Charge.Status.REFUNDED and charge.refunded_minor == charge.amount_minor
    assert charge.failure_code == "line_terminated"
    refunds = list(stripe.Refund.list(payment_intent=charge.payment_intent_id).auto_paging_iter())
    assert [refund["amount"] for refund in refunds] == [charge.amount_minor]
    after = Line.objects.get(pk=line.pk)
    assert (after.status, after.data_remaining_bytes) == (Line.Status.TERMINATED, before.data_remaining_bytes)
    assert Alert.objects.filter(line=line, kind=Alert.Kind.UNRECONCILED_CHARGE, resolved_at__isnull=True).exists()
    assert done["Location"] == reverse("payments:history")
    assert "being refunded" in customer_client.get(done["Location"]).content.decode()


def test_buy_page_without_methods_links_to_adding_one(customer_client, line):
    make_package()
    html = customer_client.get(reverse("payments:buy", args=[line.pk])).content.decode()
    assert reverse("payments:methods") + "?next=" in html


def test_another_customers_line_charge_and_receipt_are_404(
    customer, customer_client, bind_card, other_customer, package
):
    bind_card("4242424242424242")
    (method,) = methods_of(customer)
    theirs = make_line(owner=other_customer)
    assert customer_client.get(reverse("payments:buy", args=[theirs.pk])).status_code == 404
    assert buy(customer_client, theirs, package, method.id).status_code == 404
    from tests.builders import make_charge

    their_charge = make_charge(user=other_customer, line=theirs, package=package, status=Charge.Status.SUCCEEDED)
    for name in ("payments:receipt", "payments:authenticate"):
        assert customer_client.get(reverse(name, args=[their_charge.pk])).status_code == 404
    assert customer_client.post(reverse("payments:complete", args=[their_charge.pk])).status_code == 404
    assert (
        f'data-charge-id="{their_charge.pk}"' not in customer_client.get(reverse("payments:history")).content.decode()
    )


def test_paying_with_someone_elses_method_is_refused(customer_client, other_customer, line, package):
    from django.test import Client

    from tests.payments.conftest import confirm_setup_as_browser

    mallory = Client()
    mallory.force_login(other_customer)
    start = mallory.post(reverse("payments:method_setup"), {"method_type": "card"}).json()
    confirm_setup_as_browser(start["client_secret"])
    mallory.post(reverse("payments:method_finish"), {"setup_intent_id": start["setup_intent_id"]})
    (theirs,) = methods_of(other_customer)
    response = buy(customer_client, line, package, theirs.id)
    assert response.status_code == 400
    assert not Charge.objects.exists()


@pytest.mark.parametrize("name", ["payments:buy"])
def test_anonymous_buy_goes_to_login(client, line, name):
    response = client.get(reverse(name, args=[line.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- pay now ------------------------------------------------------------------------------------


@pytest.fixture
def make_failed_renewal(customer, line, package):
    """A renewal whose retries all failed, line suspended. Made after the customer's new card
    is bound: binding a default wakes the engine, which would open a new cycle instead."""
    return lambda: _failed_renewal(line, package)


def _failed_renewal(line, package):
    rule = RenewalRule.objects.create(line=line, enabled=True, package=package, trigger_data_below_mb=500)
    Line.objects.filter(pk=line.pk).update(status=Line.Status.SUSPENDED, data_remaining_bytes=0)
    return Renewal.objects.create(
        line=line,
        rule=rule,
        package=package,
        amount_minor=package.price_minor,
        currency=package.currency,
        status=Renewal.Status.FAILED,
        attempts=4,
        completed_at=timezone.now(),
        last_failure_code="card_declined",
        last_failure_message="Your card was declined.",
    )


def test_pay_now_for_a_failed_renewal_resumes_the_line(
    customer, customer_client, bind_card, make_failed_renewal, package
):
    bind_card("4242424242424242")
    failed_renewal = make_failed_renewal()
    (method,) = methods_of(customer)
    page = customer_client.get(reverse("payments:pay_renewal", args=[failed_renewal.pk]))
    assert page.status_code == 200 and "CN¥98.00" in page.content.decode()
    response = customer_client.post(
        reverse("payments:pay_renewal", args=[failed_renewal.pk]), {"payment_method": method.id}
    )
    charge = Charge.objects.get(renewal=failed_renewal, status=Charge.Status.SUCCEEDED)
    assert response["Location"] == reverse("payments:receipt", args=[charge.pk])
    failed_renewal.refresh_from_db()
    line = Line.objects.get(pk=failed_renewal.line_id)
    assert failed_renewal.status == Renewal.Status.SUCCEEDED
    assert line.status == Line.Status.ACTIVE and line.data_remaining_bytes == package.data_allowance_bytes
    # Paid: the page now says so instead of charging again.
    again = customer_client.get(reverse("payments:pay_renewal", args=[failed_renewal.pk]))
    assert again.status_code == 302
    assert Charge.objects.filter(renewal=failed_renewal, status=Charge.Status.SUCCEEDED).count() == 1


def test_pay_now_with_three_d_secure_goes_through_the_bank(customer, customer_client, bind_card, make_failed_renewal):
    bind_card("4000002500003155")
    failed_renewal = make_failed_renewal()
    (method,) = methods_of(customer)
    response = customer_client.post(
        reverse("payments:pay_renewal", args=[failed_renewal.pk]), {"payment_method": method.id}
    )
    charge = Charge.objects.get(renewal=failed_renewal, status=Charge.Status.REQUIRES_ACTION)
    assert response["Location"] == reverse("payments:authenticate", args=[charge.pk])
    secret = customer_client.get(response["Location"]).context["client_secret"]
    authenticate_as_browser(charge.payment_intent_id, secret, success=True)
    customer_client.post(reverse("payments:complete", args=[charge.pk]))
    failed_renewal.refresh_from_db()
    assert failed_renewal.status == Renewal.Status.SUCCEEDED
    assert Line.objects.get(pk=failed_renewal.line_id).status == Line.Status.ACTIVE


def test_another_customers_renewal_is_404(customer_client, other_customer, package):
    theirs = make_line(owner=other_customer)
    renewal = Renewal.objects.create(
        line=theirs, package=package, amount_minor=100, currency="CNY", status=Renewal.Status.FAILED
    )
    assert customer_client.get(reverse("payments:pay_renewal", args=[renewal.pk])).status_code == 404
    assert (
        customer_client.post(reverse("payments:pay_renewal", args=[renewal.pk]), {"payment_method": "pm_x"}).status_code
        == 404
    )


# --- unknown outcomes ---------------------------------------------------------------------------


def test_processor_time_out_leaves_the_purchase_pending_then_reconciliation_closes_it(
    customer, customer_client, bind_card, line, package, settings, unresponsive_stripe_later
):
    import time_machine

    from payments.services import on_session

    bind_card("4242424242424242")
    (method,) = methods_of(customer)
    before = Line.objects.get(pk=line.pk).data_remaining_bytes
    with unresponsive_stripe_later():
        response = buy(customer_client, line, package, method.id)
    assert response["Location"] == reverse("payments:history")
    assert "We could not confirm the payment" in customer_client.get(response["Location"]).content.decode()
    charge = Charge.objects.get(user=customer)
    assert charge.status == Charge.Status.PENDING and charge.decline_kind == Charge.DeclineKind.PROCESSOR_ERROR
    assert on_session.reconcile_stale_purchases() == []  # too early: the request could still be in flight
    with time_machine.travel(timezone.now() + settings.PAYMENTS_RECONCILE_AFTER + timedelta(seconds=1)):
        assert on_session.reconcile_stale_purchases() == [charge.pk]
    charge.refresh_from_db()
    assert charge.status == Charge.Status.FAILED and charge.failure_code == "not_sent"
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == before


def test_a_purchase_paid_but_not_recorded_is_found_and_applied_once(
    customer, line, package, add_card, stripe_customer, settings
):
    import time_machine

    from payments import gateways
    from payments.services import on_session
    from tests.builders import make_charge

    pm = add_card("4242424242424242")
    charge = make_charge(user=customer, line=line, package=package, payment_method_id=pm.id, sent_at=timezone.now())
    # Stripe took the money; our process died before recording it.
    assert gateways.charge_on_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=pm.id).succeeded
    before = Line.objects.get(pk=line.pk).data_remaining_bytes
    with time_machine.travel(timezone.now() + settings.PAYMENTS_RECONCILE_AFTER + timedelta(seconds=1)):
        assert on_session.reconcile_stale_purchases() == [charge.pk]
        assert on_session.reconcile_stale_purchases() == []
    charge.refresh_from_db()
    assert charge.status == Charge.Status.SUCCEEDED and charge.payment_intent_id
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == before + package.data_allowance_bytes


# --- SEPA Direct Debit ----------------------------------------------------------------------------


def _three_d_secure_purchase(customer, customer_client, bind_card, line, package):
    bind_card("4000002500003155")
    (method,) = methods_of(customer)
    buy(customer_client, line, package, method.id)
    charge = Charge.objects.get(user=customer)
    assert charge.status == Charge.Status.REQUIRES_ACTION
    return charge, customer_client.get(reverse("payments:authenticate", args=[charge.pk])).context["client_secret"]


def test_a_3ds_purchase_paid_at_the_bank_with_no_return_page_or_webhook_is_found_and_applied_once(
    customer, customer_client, bind_card, line, package, settings
):
    from payments.services import on_session

    charge, secret = _three_d_secure_purchase(customer, customer_client, bind_card, line, package)
    before = Line.objects.get(pk=line.pk).data_remaining_bytes
    first = charge.next_check_at  # a few minutes after the processor's answer, which has already come
    assert timedelta(minutes=2) <= first - charge.sent_at and first - timedelta(minutes=2) <= timezone.now()
    assert on_session.reconcile_stale_purchases(now=first - timedelta(seconds=1)) == []
    assert on_session.reconcile_stale_purchases(now=first) == []  # still at the bank: left waiting, checked later
    charge.refresh_from_db()
    assert charge.status == Charge.Status.REQUIRES_ACTION
    # Looked up again later: the wait at least doubles (as long again as it has waited), within the cap.
    assert first - charge.sent_at <= charge.next_check_at - first <= settings.PAYMENTS_RECONCILE_AFTER

    # Paid at the bank; the customer closes the tab and the webhook is lost.
    assert authenticate_as_browser(charge.payment_intent_id, secret, success=True).status_code == 200
    assert on_session.reconcile_stale_purchases(now=charge.next_check_at) == [charge.pk]
    assert on_session.reconcile_stale_purchases(now=charge.next_check_at + timedelta(days=2)) == []
    charge.refresh_from_db()
    assert charge.status == Charge.Status.SUCCEEDED
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == before + package.data_allowance_bytes


def test_a_3ds_purchase_abandoned_at_the_bank_is_withdrawn_when_its_window_ends(
    customer, customer_client, bind_card, line, package, settings
):
    from payments.services import on_session

    charge, secret = _three_d_secure_purchase(customer, customer_client, bind_card, line, package)
    before = Line.objects.get(pk=line.pk).data_remaining_bytes
    end = charge.sent_at + settings.PAYMENTS_AUTHENTICATION_WINDOW
    assert on_session.reconcile_stale_purchases(now=end) == []
    assert on_session.reconcile_stale_purchases(now=end + timedelta(minutes=11)) == [charge.pk]
    charge.refresh_from_db()
    assert charge.status == Charge.Status.FAILED and charge.failure_code == "authentication_timeout"
    assert (
        stripe.PaymentIntent.retrieve(charge.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY)["status"]
        == "canceled"
    )
    # The page the customer left open can no longer take the money.
    assert authenticate_as_browser(charge.payment_intent_id, secret, success=True).status_code >= 400
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == before
    assert on_session.reconcile_stale_purchases(now=end + timedelta(hours=1)) == []


# The SEPA purchase tests are about SEPA's late settlement, bought in the test catalogue's CNY: the
# operator offers SEPA for it there only (docs/payment-methods.md: by default SEPA is for EUR).
SEPA_FOR_CNY = {"CNY": ["card", "sepa_debit"]}


def bind_sepa(client, iban):
    from django.test import override_settings

    from tests.payments.conftest import confirm_sepa_setup_as_browser

    with override_settings(PAYMENT_METHOD_TYPES_BY_CURRENCY=SEPA_FOR_CNY):
        start = client.post(reverse("payments:method_setup"), {"method_type": "sepa_debit"}).json()
    confirm_sepa_setup_as_browser(start["client_secret"], iban)
    client.post(reverse("payments:method_finish"), {"setup_intent_id": start["setup_intent_id"], "make_default": "on"})


def test_sepa_purchase_that_settles_at_once(customer, customer_client, line, package, settings):
    settings.PAYMENT_METHOD_TYPES_BY_CURRENCY = SEPA_FOR_CNY
    bind_sepa(customer_client, "DE89370400440532013000")
    (method,) = methods_of(customer)
    response = buy(customer_client, line, package, method.id)
    charge = Charge.objects.get(user=customer)
    assert charge.status == Charge.Status.SUCCEEDED and charge.payment_method_summary == "SEPA Direct Debit •••• 3000"
    assert response["Location"] == reverse("payments:receipt", args=[charge.pk])


def test_sepa_purchase_that_bounces_later_stays_pending_then_fails(customer, customer_client, line, package, settings):
    from payments.services import on_session

    settings.PAYMENT_METHOD_TYPES_BY_CURRENCY = SEPA_FOR_CNY
    bind_sepa(customer_client, "DE62370400440532013001")  # localstripe: processing, then declined ~0.5 s later
    (method,) = methods_of(customer)
    before = Line.objects.get(pk=line.pk).data_remaining_bytes
    response = buy(customer_client, line, package, method.id)
    charge = Charge.objects.get(user=customer)
    assert charge.status == Charge.Status.PENDING and charge.payment_intent_id and charge.decline_kind == ""
    assert "Your bank is processing the payment" in customer_client.get(response["Location"]).content.decode()
    # localstripe declines it about 0.5 s later: asked until it has, however long that takes here.
    from tests.partner.helpers import wait_until

    assert wait_until(
        lambda: on_session.reconcile(charge=Charge.objects.get(pk=charge.pk)).status != Charge.Status.PENDING,
        timeout=60,
        interval=0.5,
    )
    charge = Charge.objects.get(pk=charge.pk)
    assert charge.status == Charge.Status.FAILED and charge.failure_code == "card_declined"
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == before


def test_pay_now_for_a_cny_renewal_does_not_list_a_sepa_mandate(customer, customer_client, make_failed_renewal):
    bind_sepa(customer_client, "DE89370400440532013000")
    failed_renewal = make_failed_renewal()  # the test catalogue's CNY package
    sepa = methods_of(customer)[0]
    page = customer_client.get(reverse("payments:pay_renewal", args=[failed_renewal.pk])).content.decode()
    assert f'value="{sepa.id}"' not in page
    response = customer_client.post(
        reverse("payments:pay_renewal", args=[failed_renewal.pk]), {"payment_method": sepa.id}
    )
    assert response.status_code == 400
    assert not Charge.objects.filter(renewal=failed_renewal).exists()


def test_a_top_up_in_cny_refuses_a_sepa_mandate_with_a_form_error_and_charges_nothing(
    customer, customer_client, line, package
):
    # docs/payment-methods.md: by default SEPA pays euros only; the test catalogue's package is CNY.
    bind_sepa(customer_client, "DE89370400440532013000")
    (sepa,) = methods_of(customer)
    page = reverse("payments:buy", args=[line.pk])
    assert f'value="{sepa.id}"' not in customer_client.get(page).content.decode()
    assert buy(customer_client, line, package, sepa.id).status_code == 400
    # With a euro package on sale too the mandate is listed (it can pay that one), and choosing
    # the CNY package with it says why it cannot.
    make_package(name="Euro 5 GB", currency="EUR", price_minor=900)
    assert f'value="{sepa.id}"' in customer_client.get(page).content.decode()
    response = buy(customer_client, line, package, sepa.id)
    assert response.status_code == 400
    assert "This payment method cannot pay in CNY." in response.content.decode()
    assert not Charge.objects.filter(user=customer).exists()
