"""Adversarial review of branch money-terms: each test states the expected behaviour and fails
on the branch as reviewed."""

from datetime import timedelta

from django.utils import timezone

from payments.models import Charge
from renewals.models import Renewal
from renewals.services import _base, charging, claims, dispatcher, outcomes, rules


def test_the_canceled_webhook_of_an_intent_we_withdraw_before_a_new_attempt_spends_no_retry_and_does_not_stop_that_attempt(
    rule, policy, add_card, customer, client
):
    """Pay-now / withdrawal "superseded is not a decline, spends no retry" (docs/money.md). A failed
    cycle still has its off-session 3-D Secure intent open (it failed before timeouts withdrew
    first); the customer adds a new card, which wakes the renewal for one immediate attempt
    (`charging`). The charge step withdraws the old intent first: cancel, then read. Stripe's
    `payment_intent.canceled` webhook for that cancel can be recorded before our read is (here: the
    first run of the step died after the cancel, and the webhook came before the task ran again). It
    arrives as a plain decline ("canceled") of an off-session charge while the renewal is `charging`:
    it was counted as a failed attempt (failures + 1, retry scheduled, retry email) and the new
    card's attempt was then skipped as `not_charging`."""
    import stripe
    from django.conf import settings

    from payments.services import webhooks
    from tests.payments.test_webhooks import event_for, post_event, sign
    from tests.renewals.test_authentication import waiting_for_3ds

    endpoint = webhooks.configure_local_webhook_endpoint(base_url="http://testserver", register=False)
    renewal = waiting_for_3ds(rule, add_card)
    old = Charge.objects.get(renewal=renewal, status=Charge.Status.REQUIRES_ACTION)
    # Failed with its intent still open, as cycles failed before timeouts withdrew their intents first.
    Renewal.objects.filter(pk=renewal.pk).update(status=Renewal.Status.FAILED, completed_at=timezone.now())

    add_card("4242424242424242")
    now = timezone.now()
    assert rules.payment_method_changed(user=customer, now=now) == [renewal.pk]
    assert claims.claim_due_renewals(now=now, renewal_ids=[renewal.pk]) == [renewal.pk]
    # The charge step's withdrawal reaches the processor; the worker dies before reading the intent back.
    canceled = stripe.PaymentIntent.cancel(old.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY)
    body = event_for(canceled, "payment_intent.canceled", "evt_withdrawn")
    assert post_event(client, endpoint, body, sign(body, endpoint.secret)).status_code == 200  # the real webhook path
    assert Charge.objects.get(pk=old.pk).status == Charge.Status.FAILED
    renewal.refresh_from_db()
    assert (renewal.status, renewal.failures) == (Renewal.Status.CHARGING, 0)

    renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)  # the task, delivered again

    renewal.refresh_from_db()
    assert renewal.failures == 0
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert Charge.objects.get(pk=old.pk).failure_code == _base.SUPERSEDED


def test_once_a_late_success_pays_the_cycle_no_other_3ds_intent_of_that_cycle_is_left_open_at_the_processor(
    rule, add_card
):
    """No double charge (docs/invariants.md #1; "withdrawing anything open at the processor first").
    The first attempt was closed as never sent (slow request) and the next attempt asked for 3-D
    Secure (renewal requires_action, the customer emailed a pay link). The slow first attempt then
    succeeds and, its cycle being open, pays the renewal. The second attempt's intent was never
    withdrawn: abandoned_authentications only looked at cancelled and failed renewals, so the
    emailed link could still take the money a second time (then refunded as paid_after_closed)."""
    import stripe
    from django.conf import settings

    from payments import gateways
    from tests.renewals.test_charging import THREE_D_SECURE_CARD, claimed

    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    customer_id = gateways.ensure_customer(rule.line.owner).id
    pm_id = gateways.default_payment_method_id(rule.line.owner)
    slow = charging.prepare_charge(
        renewal_id=renewal.pk, customer_id=customer_id, payment_method_id=pm_id, now=now
    ).charge
    later = now + timedelta(minutes=11)
    dispatcher.run_dispatcher(now=later, enqueue=False)  # closed as never sent; the renewal is claimed again
    assert Charge.objects.get(pk=slow.pk).failure_code == "not_sent"
    add_card(THREE_D_SECURE_CARD)
    assert charging.charge_renewal(renewal_id=renewal.pk, now=later).status == Renewal.Status.REQUIRES_ACTION
    waiting = Charge.objects.get(renewal=renewal, status=Charge.Status.REQUIRES_ACTION)

    outcome = gateways.charge_off_session(
        charge=slow, customer_id=customer_id, payment_method_id=pm_id
    )  # the slow request lands
    assert (
        outcomes.record_charge_outcome(charge_id=slow.pk, outcome=outcome, now=timezone.now()).status
        == Renewal.Status.SUCCEEDED
    )
    dispatcher.run_dispatcher(now=timezone.now() + timedelta(minutes=1), enqueue=False)

    intent = stripe.PaymentIntent.retrieve(waiting.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY)
    assert intent["status"] == "canceled"
    assert Charge.objects.filter(renewal=renewal, status=Charge.Status.SUCCEEDED).count() == 1


def test_once_a_late_success_pays_the_cycle_its_other_3ds_intent_is_withdrawn_right_after_the_commit(
    rule, add_card, django_capture_on_commit_callbacks
):
    """The same, without waiting for the dispatcher: the success's own after-commit step withdraws it."""
    import stripe
    from django.conf import settings

    from payments import gateways
    from tests.renewals.test_charging import THREE_D_SECURE_CARD, claimed

    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    customer_id = gateways.ensure_customer(rule.line.owner).id
    pm_id = gateways.default_payment_method_id(rule.line.owner)
    slow = charging.prepare_charge(
        renewal_id=renewal.pk, customer_id=customer_id, payment_method_id=pm_id, now=now
    ).charge
    later = now + timedelta(minutes=11)
    dispatcher.run_dispatcher(now=later, enqueue=False)
    add_card(THREE_D_SECURE_CARD)
    assert charging.charge_renewal(renewal_id=renewal.pk, now=later).status == Renewal.Status.REQUIRES_ACTION
    waiting = Charge.objects.get(renewal=renewal, status=Charge.Status.REQUIRES_ACTION)

    outcome = gateways.charge_off_session(charge=slow, customer_id=customer_id, payment_method_id=pm_id)
    with django_capture_on_commit_callbacks(execute=True):
        outcomes.record_charge_outcome(charge_id=slow.pk, outcome=outcome, now=timezone.now())

    intent = stripe.PaymentIntent.retrieve(waiting.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY)
    assert intent["status"] == "canceled"
    assert Charge.objects.get(pk=waiting.pk).status == Charge.Status.FAILED
