"""payments.gateways against the real localstripe: what the renewals engine relies on."""

import threading

import pytest
import stripe
from djstripe.models import Account, APIKey, Customer

from payments import gateways
from payments.gateways import OutcomeKind
from renewals.models import RetryPolicy
from tests.builders import make_charge
from tests.payments.conftest import create_card


def test_local_owner_account_lets_dj_stripe_sync_without_get_account(db, settings):
    gateways.ensure_local_owner_account()
    gateways.ensure_local_owner_account()  # idempotent
    assert Account.objects.filter(id=gateways.LOCAL_ACCOUNT_ID).count() == 1
    key = APIKey.objects.get(secret=settings.STRIPE_SECRET_KEY)
    assert key.djstripe_owner_account_id == gateways.LOCAL_ACCOUNT_ID
    # The call dj-stripe makes before every sync: answered from the rows, no GET /v1/account.
    assert Account.get_or_retrieve_for_api_key(settings.STRIPE_SECRET_KEY).id == gateways.LOCAL_ACCOUNT_ID


def test_ensure_customer_creates_one_synced_customer_per_user(customer):
    first = gateways.ensure_customer(customer)
    second = gateways.ensure_customer(customer)
    assert first.id == second.id
    assert Customer.objects.filter(subscriber=customer).count() == 1
    first.refresh_from_db()
    assert first.email == customer.email
    assert first.djstripe_owner_account_id == gateways.LOCAL_ACCOUNT_ID
    remote = stripe.Customer.retrieve(first.id)
    assert remote["metadata"]["djstripe_subscriber"] == str(customer.pk)


def test_default_method_and_summary(customer, add_card):
    assert gateways.default_payment_method_id(customer) == gateways.default_payment_method_id(customer)
    pm = add_card("4242424242424242")
    assert gateways.default_payment_method_id(customer) == pm.id
    summary = gateways.payment_method_summary(pm)
    assert summary == "Visa •••• 4242"
    assert "424242424242" not in summary


def test_no_default_method_without_customer(customer):
    assert gateways.default_payment_method_id(customer) is None


@pytest.mark.pure
def test_summary_of_other_method_types():
    assert (
        gateways.payment_method_summary({"type": "sepa_debit", "sepa_debit": {"last4": "3000"}})
        == "SEPA Direct Debit •••• 3000"
    )
    assert (
        gateways.payment_method_summary({"type": "card", "card": {"brand": "mastercard", "last4": "4444"}})
        == "Mastercard •••• 4444"
    )
    assert (
        gateways.payment_method_summary({"type": "paypal", "paypal": {"payer_email": "a@example.com"}})
        == "PayPal (a@example.com)"
    )


def test_off_session_charge_succeeds_with_metadata(customer, line, package, stripe_customer, add_card):
    pm = add_card("4242424242424242")
    charge = make_charge(user=customer, line=line, package=package)
    outcome = gateways.charge_off_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=pm.id)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    pi = stripe.PaymentIntent.retrieve(outcome.payment_intent_id)
    assert pi["status"] == "succeeded"
    assert pi["amount"] == package.price_minor and pi["currency"] == "cny"
    assert pi["metadata"]["charge_id"] == str(charge.pk)
    assert pi["customer"] == stripe_customer.id


def test_declined_charge_is_soft_with_its_payment_intent(customer, line, package, stripe_customer, add_card):
    pm = add_card("4000000000000341")
    charge = make_charge(user=customer, line=line, package=package)
    outcome = gateways.charge_off_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=pm.id)
    assert outcome.kind is OutcomeKind.SOFT_DECLINE
    assert outcome.failure_code == "card_declined"
    assert outcome.failure_message
    # localstripe leaves error.payment_intent empty: the gateway finds it through the charge.
    assert outcome.payment_intent_id
    pi = stripe.PaymentIntent.retrieve(outcome.payment_intent_id)
    assert pi["status"] == "requires_payment_method"
    assert pi["metadata"]["charge_id"] == str(charge.pk)


def test_decline_codes_in_the_operator_policy_are_hard(customer, line, package, stripe_customer, add_card):
    policy = RetryPolicy.current()
    policy.hard_decline_codes = ["card_declined"]
    policy.save()
    pm = add_card("4000000000000341")
    charge = make_charge(user=customer, line=line, package=package)
    outcome = gateways.charge_off_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=pm.id)
    assert outcome.kind is OutcomeKind.HARD_DECLINE


def test_three_d_secure_card_off_session_needs_authentication(customer, line, package, stripe_customer, add_card):
    pm = add_card("4000002500003155")
    charge = make_charge(user=customer, line=line, package=package)
    outcome = gateways.charge_off_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=pm.id)
    assert outcome.kind is OutcomeKind.AUTHENTICATION_REQUIRED
    assert outcome.payment_intent_id
    assert outcome.client_secret


@pytest.mark.pure
def test_real_stripe_shape_of_authentication_required_is_recognised():
    # Real Stripe answers off-session 3-D Secure with a CardError whose intent is back to
    # requires_payment_method; reconciliation sees that intent later.
    pi = {
        "id": "pi_x",
        "status": "requires_payment_method",
        "client_secret": "pi_x_secret",
        "last_payment_error": {"code": "authentication_required", "message": "Authentication required."},
    }
    assert gateways.outcome_from_payment_intent(pi).kind is OutcomeKind.AUTHENTICATION_REQUIRED


def test_charge_with_a_method_not_attached_is_refused_not_unknown(customer, line, package, stripe_customer):
    charge = make_charge(user=customer, line=line, package=package)
    outcome = gateways.charge_off_session(
        charge=charge, customer_id=stripe_customer.id, payment_method_id="pm_doesnotexist"
    )
    assert outcome.kind is OutcomeKind.HARD_DECLINE


def test_time_out_is_an_unknown_outcome_sent_once(
    customer, line, package, stripe_customer, add_card, unresponsive_stripe
):
    # add_card ran against localstripe before the fixture switched the API base.
    pm_id = gateways.default_payment_method_id(customer)
    charge = make_charge(user=customer, line=line, package=package)
    outcome = gateways.charge_off_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=pm_id)
    assert outcome.kind is OutcomeKind.PROCESSOR_ERROR
    assert outcome.is_unknown
    assert outcome.payment_intent_id is None
    # max_network_retries=0 for charges: exactly one request reached the "processor".
    assert len(unresponsive_stripe) == 1


def test_reconciliation_finds_the_intent_of_a_charge_by_metadata(customer, line, package, stripe_customer, add_card):
    pm = add_card("4242424242424242")
    sent = make_charge(user=customer, line=line, package=package)
    outcome = gateways.charge_off_session(charge=sent, customer_id=stripe_customer.id, payment_method_id=pm.id)
    never_sent = make_charge(user=customer, line=line, package=package)
    # The charge row does not know its intent (a crash between the answer and our commit).
    found = gateways.find_payment_intent_for_charge(sent)
    assert found is not None and found["id"] == outcome.payment_intent_id
    assert gateways.outcome_from_payment_intent(found).kind is OutcomeKind.SUCCEEDED
    assert gateways.find_payment_intent_for_charge(never_sent) is None


def test_reconciliation_refuses_to_guess_when_stripe_is_unreachable(
    customer, line, package, stripe_customer, unresponsive_stripe
):
    charge = make_charge(user=customer, line=line, package=package)
    with pytest.raises(gateways.GatewayError) as info:
        gateways.find_payment_intent_for_charge(charge)
    assert info.value.unknown


def test_card_numbers_only_reach_localstripe(customer, stripe_customer):
    pm = gateways.attach_payment_method(
        customer_id=stripe_customer.id, payment_method_id=create_card("4242424242424242")
    )
    assert "4242424242424242" not in str(pm.stripe_data)


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_needs_make_one_stripe_customer():
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from tests.builders import make_user

    user = make_user(email="racing@example.com")
    gateways.ensure_local_owner_account()
    barrier = threading.Barrier(4)

    def first_need():
        try:
            barrier.wait()
            return gateways.ensure_customer(user).id
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(lambda _: first_need(), range(4)))
    assert len(ids) == 1
    assert Customer.objects.filter(subscriber=user).count() == 1
    remote = [c for c in stripe.Customer.list(limit=100).auto_paging_iter() if c["email"] == "racing@example.com"]
    assert len(remote) == 1
