"""A Stripe event is only a hint: whatever its payload says, a charge settles only to what Stripe
itself says about the PaymentIntent we stored on it. Forged events (dj-stripe's debug secret
override, an intent id we never stored, ids that disagree with our row, a payload that cannot be
checked) change nothing and are logged at ERROR for the operator. The webhook endpoint refuses
oversized bodies before storing them, and stored requests are pruned on a schedule."""

import json
import logging
import time
from datetime import timedelta

import pytest
import stripe
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone
from djstripe.models import Event, WebhookEventTrigger

from accounts.models import Line
from payments import gateways
from payments.models import Charge
from tests.builders import make_charge
from tests.payments.test_webhooks import post_event, sign

HANDLED_TYPES = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.processing",
    "payment_intent.requires_action",
]


def event_body(intent: dict, event_type: str = "payment_intent.succeeded", event_id: str = "") -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_forged_{time.monotonic_ns()}",
            "object": "event",
            "type": event_type,
            "api_version": "2017-08-15",
            "livemode": False,
            "created": int(time.time()),
            "data": {"object": intent},
        },
        default=str,
    ).encode()


def paid_looking(intent, **changes) -> dict:
    """The real intent's payload, edited to say it was paid."""
    return dict(intent.to_dict(), status="succeeded", last_payment_error=None, **changes)


@pytest.fixture
def unpaid_purchase(customer, customer_client, bind_card, line, package):
    """A 3-D Secure purchase nobody authenticated: Stripe says requires_action."""
    bind_card("4000002500003155")
    from payments.selectors import payment_methods_for_user

    (method,) = payment_methods_for_user(customer)
    customer_client.post(reverse("payments:buy", args=[line.pk]), {"package": package.pk, "payment_method": method.id})
    charge = Charge.objects.get(user=customer)
    assert charge.status == Charge.Status.REQUIRES_ACTION
    return charge, stripe.PaymentIntent.retrieve(charge.payment_intent_id)


def assert_unpaid(charge, line):
    data_before = line.data_remaining_bytes
    charge.refresh_from_db()
    assert charge.status == Charge.Status.REQUIRES_ACTION
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == data_before


def rejected(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "webhook_event_rejected" in r.getMessage()
    ]


def test_the_debug_secret_override_header_is_never_accepted(settings, client, endpoint, unpaid_purchase, line):
    settings.DEBUG = True  # dj-stripe honours the header only under DEBUG: the worst case
    charge, intent = unpaid_purchase
    body = event_body(paid_looking(intent), event_id="evt_override")
    response = client.post(
        reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": endpoint.djstripe_uuid}),
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(body, "whsec_attacker"),
        HTTP_X_DJSTRIPE_WEBHOOK_SECRET="whsec_attacker",
    )
    assert response.status_code == 400
    assert not Event.objects.filter(id="evt_override").exists()
    assert not WebhookEventTrigger.objects.filter(valid=True).exists()
    assert_unpaid(charge, line)


@pytest.mark.parametrize("event_type", HANDLED_TYPES)
def test_an_event_for_an_intent_stripe_does_not_know_is_a_400_and_settles_nothing_even_naming_our_charge(
    event_type, client, endpoint, unpaid_purchase, line, caplog
):
    charge, intent = unpaid_purchase
    body = event_body(
        paid_looking(intent, id="pi_forged0000000001", metadata={"charge_id": str(charge.pk)}), event_type
    )
    response = post_event(client, endpoint, body, sign(body, endpoint.secret))
    assert response.status_code == 400 and "error" in response.json()
    assert_unpaid(charge, line)
    assert any("webhook_event_rejected" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def receive(event_type: str, payload: dict):
    """Our receiver on its own, as dj-stripe calls it after its own handler: with real Stripe,
    dj-stripe skips an object Stripe reports missing ('resource_missing') and goes on to us."""
    from djstripe.models import Event as StripeEvent

    from payments.webhooks import settle_charge_from_payment_intent_event

    event = StripeEvent(id=f"evt_direct_{time.monotonic_ns()}", type=event_type, data={"object": payload})
    settle_charge_from_payment_intent_event(sender=StripeEvent, event=event)


@pytest.mark.parametrize("event_type", HANDLED_TYPES)
def test_the_receiver_ignores_an_unknown_intent_even_naming_our_charge(event_type, unpaid_purchase, line, caplog):
    charge, intent = unpaid_purchase
    receive(event_type, paid_looking(intent, id="pi_forged0000000001", metadata={"charge_id": str(charge.pk)}))
    assert_unpaid(charge, line)
    assert rejected(caplog)


@pytest.mark.parametrize("event_type", HANDLED_TYPES)
def test_a_paid_looking_payload_for_our_intent_settles_only_to_what_stripe_says(
    event_type, client, endpoint, unpaid_purchase, line
):
    charge, intent = unpaid_purchase
    body = event_body(paid_looking(intent), event_type)
    assert post_event(client, endpoint, body, sign(body, endpoint.secret)).status_code == 200
    # Replayed: still nothing.
    assert post_event(client, endpoint, body, sign(body, endpoint.secret)).status_code == 200
    assert_unpaid(charge, line)


def test_a_stored_intent_stripe_does_not_know_is_never_settled_from_the_payload(customer, line, package, caplog):
    charge = make_charge(user=customer, line=line, package=package, payment_intent_id="pi_unknown_at_stripe_01")
    data_before = line.data_remaining_bytes
    receive(
        "payment_intent.succeeded",
        {
            "id": "pi_unknown_at_stripe_01",
            "object": "payment_intent",
            "status": "succeeded",
            "amount": charge.amount_minor,
            "currency": charge.currency.lower(),
            "metadata": {"charge_id": str(charge.pk)},
            "livemode": False,
            "created": int(time.time()),
        },
    )
    charge.refresh_from_db()
    assert charge.status == Charge.Status.PENDING
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == data_before
    assert rejected(caplog)


def test_metadata_naming_another_charge_than_the_intents_own_changes_nothing(
    client, endpoint, customer, stripe_customer, add_card, line, package, caplog
):
    # Our charge whose intent Stripe says succeeded, but whose answer we never recorded.
    method = add_card()
    charge = make_charge(user=customer, line=line, package=package, sent_at=timezone.now())
    outcome = gateways.charge_on_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=method.id)
    assert outcome.kind is gateways.OutcomeKind.SUCCEEDED
    Charge.objects.filter(pk=charge.pk).update(payment_intent_id=outcome.payment_intent_id)
    other = make_charge(user=customer, line=line, package=package)
    intent = stripe.PaymentIntent.retrieve(outcome.payment_intent_id)
    body = event_body(dict(intent.to_dict(), metadata={"charge_id": str(other.pk)}))
    assert post_event(client, endpoint, body, sign(body, endpoint.secret)).status_code == 200
    assert {c.status for c in Charge.objects.filter(pk__in=[charge.pk, other.pk])} == {Charge.Status.PENDING}
    assert rejected(caplog)


def test_an_intent_created_before_our_process_died_is_settled_by_its_event_through_stripe(
    client, endpoint, customer, stripe_customer, add_card, line, package, caplog
):
    method = add_card()
    charge = make_charge(user=customer, line=line, package=package, sent_at=timezone.now())
    outcome = gateways.charge_on_session(charge=charge, customer_id=stripe_customer.id, payment_method_id=method.id)
    assert outcome.kind is gateways.OutcomeKind.SUCCEEDED  # ... and then the process died: no id stored
    intent = stripe.PaymentIntent.retrieve(outcome.payment_intent_id)
    # A forged event for that charge, naming an intent that is not its own: nothing.
    receive("payment_intent.succeeded", dict(intent.to_dict(), id="pi_forged0000000002"))
    charge.refresh_from_db()
    assert charge.status == Charge.Status.PENDING and charge.payment_intent_id is None
    assert rejected(caplog)
    # Its real event: Stripe, asked by the metadata we wrote, says paid.
    real = event_body(intent.to_dict())
    assert post_event(client, endpoint, real, sign(real, endpoint.secret)).status_code == 200
    charge.refresh_from_db()
    assert charge.status == Charge.Status.SUCCEEDED and charge.payment_intent_id == intent["id"]
    line.refresh_from_db()
    assert line.package_id == package.pk


def test_an_oversized_body_is_a_413_in_json_and_nothing_is_stored(client, endpoint):
    body = b'{"id": "evt_big", "livemode": false, "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    for _attempt in range(5):
        response = post_event(client, endpoint, body, sign(body, "whsec_wrong"))
        assert response.status_code == 413
        assert "error" in response.json()
    assert WebhookEventTrigger.objects.count() == 0


def test_stored_webhook_requests_are_pruned_invalid_after_a_day_valid_after_the_retention(db, settings, endpoint):
    from payments.tasks import prune_webhook_triggers

    settings.STRIPE_WEBHOOK_TRIGGER_RETENTION_DAYS = 30
    now = timezone.now()

    def trigger(*, valid: bool, age: timedelta) -> int:
        row = WebhookEventTrigger.objects.create(
            remote_ip="127.0.0.1", headers={}, body="{}", valid=valid, webhook_endpoint=endpoint
        )
        WebhookEventTrigger.objects.filter(pk=row.pk).update(created=now - age)
        return row.pk

    fresh_invalid = trigger(valid=False, age=timedelta(hours=23))
    trigger(valid=False, age=timedelta(hours=25))
    recent_valid = trigger(valid=True, age=timedelta(days=29))
    trigger(valid=True, age=timedelta(days=31))
    assert prune_webhook_triggers() == (1, 1)
    assert set(WebhookEventTrigger.objects.values_list("pk", flat=True)) == {fresh_invalid, recent_valid}


@pytest.mark.pure
def test_beat_prunes_webhook_requests():
    entries = [
        entry
        for entry in django_settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "payments.prune_webhook_triggers"
    ]
    assert len(entries) == 1
    assert django_settings.CELERY_TASK_ROUTES["payments.prune_webhook_triggers"] == {"queue": "sweeps"}
