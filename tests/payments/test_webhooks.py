"""Stripe events through dj-stripe's signed endpoint settle our charges: once, whatever the
order, and never on a bad signature. Events are real localstripe PaymentIntents; the last test
has localstripe deliver them itself to a live server."""

import hashlib
import hmac
import json
import time

import pytest
import stripe
from django.urls import reverse
from djstripe.models import Event, WebhookEventTrigger

from accounts.models import Line
from payments.models import Charge
from payments.services import webhooks
from tests.payments.conftest import authenticate_as_browser


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event_for(intent, event_type: str, event_id: str) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "api_version": "2017-08-15",
            "livemode": False,
            "created": int(time.time()),
            "data": {
                "object": intent.to_dict_recursive() if hasattr(intent, "to_dict_recursive") else intent.to_dict()
            },
        },
        default=str,
    ).encode()


def post_event(client, endpoint, body: bytes, signature: str):
    return client.post(
        reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": endpoint.djstripe_uuid}),
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )


@pytest.fixture
def authenticated_purchase(customer, customer_client, bind_card, line, package):
    """A 3-D Secure purchase whose customer confirmed at the bank but never came back to our
    page: only the webhook can settle it."""
    bind_card("4000002500003155")
    from payments.selectors import payment_methods_for_user

    (method,) = payment_methods_for_user(customer)
    customer_client.post(reverse("payments:buy", args=[line.pk]), {"package": package.pk, "payment_method": method.id})
    charge = Charge.objects.get(user=customer)
    assert charge.status == Charge.Status.REQUIRES_ACTION
    intent = stripe.PaymentIntent.retrieve(charge.payment_intent_id)
    authenticate_as_browser(intent["id"], intent["client_secret"], success=True)
    return charge, stripe.PaymentIntent.retrieve(charge.payment_intent_id)


def test_bad_signature_is_400_and_changes_nothing(client, endpoint, authenticated_purchase, line):
    charge, intent = authenticated_purchase
    data_before = Line.objects.get(pk=line.pk).data_remaining_bytes
    body = event_for(intent, "payment_intent.succeeded", "evt_bad_sig")
    for signature in (sign(body, "whsec_wrong"), "", sign(body, endpoint.secret, int(time.time()) - 3600)):
        assert post_event(client, endpoint, body, signature).status_code == 400
    charge.refresh_from_db()
    assert charge.status == Charge.Status.REQUIRES_ACTION
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == data_before
    assert not Event.objects.filter(id="evt_bad_sig").exists()
    assert WebhookEventTrigger.objects.filter(valid=True).count() == 0


def test_the_same_event_twice_is_applied_once(client, endpoint, authenticated_purchase, line, package):
    charge, intent = authenticated_purchase
    data_before = Line.objects.get(pk=line.pk).data_remaining_bytes
    body = event_for(intent, "payment_intent.succeeded", "evt_twice")
    assert post_event(client, endpoint, body, sign(body, endpoint.secret)).status_code == 200
    assert post_event(client, endpoint, body, sign(body, endpoint.secret)).status_code == 200
    charge.refresh_from_db()
    assert charge.status == Charge.Status.SUCCEEDED
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == data_before + package.data_allowance_bytes
    assert Event.objects.filter(id="evt_twice").count() == 1


def test_a_late_failure_event_after_success_changes_nothing(client, endpoint, authenticated_purchase, line, package):
    charge, intent = authenticated_purchase
    data_before = Line.objects.get(pk=line.pk).data_remaining_bytes
    succeeded = event_for(intent, "payment_intent.succeeded", "evt_ok")
    stale = dict(
        intent.to_dict(),
        status="requires_payment_method",
        last_payment_error={"code": "card_declined", "message": "Your card was declined."},
    )
    failed = json.dumps(
        {
            "id": "evt_late_fail",
            "object": "event",
            "type": "payment_intent.payment_failed",
            "api_version": "2017-08-15",
            "livemode": False,
            "created": int(time.time()) - 60,
            "data": {"object": stale},
        },
        default=str,
    ).encode()
    assert post_event(client, endpoint, succeeded, sign(succeeded, endpoint.secret)).status_code == 200
    assert post_event(client, endpoint, failed, sign(failed, endpoint.secret)).status_code == 200
    charge.refresh_from_db()
    assert charge.status == Charge.Status.SUCCEEDED and charge.failure_code == ""
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == data_before + package.data_allowance_bytes


def test_a_failure_event_arriving_first_settles_to_stripes_latest_state(
    client, endpoint, authenticated_purchase, line, package
):
    # Out of order: the stale 'failed' event comes first; the receiver reads the intent back
    # from Stripe, which says succeeded.
    charge, intent = authenticated_purchase
    stale = dict(intent.to_dict(), status="requires_payment_method")
    failed = json.dumps(
        {
            "id": "evt_first_fail",
            "object": "event",
            "type": "payment_intent.payment_failed",
            "api_version": "2017-08-15",
            "livemode": False,
            "created": int(time.time()),
            "data": {"object": stale},
        },
        default=str,
    ).encode()
    assert post_event(client, endpoint, failed, sign(failed, endpoint.secret)).status_code == 200
    charge.refresh_from_db()
    assert charge.status == Charge.Status.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_localstripe_delivers_the_event_and_it_settles_the_charge(live_server, customer, line, package, settings):
    from django.test import Client

    from tests.payments.conftest import confirm_setup_as_browser

    webhooks.configure_local_webhook_endpoint(base_url=live_server.url)
    browser = Client()
    browser.force_login(customer)
    start = browser.post(reverse("payments:method_setup"), {"method_type": "card"}).json()
    confirm_setup_as_browser(start["client_secret"], "4000002500003155")
    browser.post(reverse("payments:method_finish"), {"setup_intent_id": start["setup_intent_id"]})
    from payments.selectors import payment_methods_for_user

    (method,) = payment_methods_for_user(customer)
    browser.post(reverse("payments:buy", args=[line.pk]), {"package": package.pk, "payment_method": method.id})
    charge = Charge.objects.get(user=customer)
    intent = stripe.PaymentIntent.retrieve(charge.payment_intent_id)
    authenticate_as_browser(intent["id"], intent["client_secret"], success=True)
    # localstripe posts the signed event about a second later; nobody visits our page. The bound
    # only says when to give up on a broken delivery, not how fast a machine must be.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        charge.refresh_from_db()
        if charge.status == Charge.Status.SUCCEEDED:
            break
        time.sleep(0.2)
    assert charge.status == Charge.Status.SUCCEEDED
    assert Event.objects.filter(type="payment_intent.succeeded").exists()
    line.refresh_from_db()
    assert line.package_id == package.pk


def test_configure_local_webhooks_command(db, settings):
    from io import StringIO

    from django.core.management import call_command
    from djstripe.models import WebhookEndpoint

    out = StringIO()
    call_command("configure_local_webhooks", "--url", "http://127.0.0.1:8000", stdout=out)
    endpoint = WebhookEndpoint.objects.get(id=webhooks.LOCAL_WEBHOOK_ENDPOINT_ID)
    assert endpoint.url == f"http://127.0.0.1:8000/stripe/webhook/{endpoint.djstripe_uuid}/"
    assert endpoint.secret == settings.STRIPE_WEBHOOK_SECRET
    assert endpoint.url in out.getvalue()
    # Run again (make run restarts): still one endpoint.
    call_command("configure_local_webhooks", "--url", "http://127.0.0.1:8000", stdout=StringIO())
    assert WebhookEndpoint.objects.count() == 1


def test_configure_local_webhooks_says_clearly_when_localstripe_is_down(db, settings):
    from django.core.management import CommandError, call_command

    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens on the discard port
    with pytest.raises(CommandError, match="could not configure localstripe"):
        call_command("configure_local_webhooks", "--url", "http://127.0.0.1:8000", "--wait", "1")


# --- rotating the signing secret (docs/deploying.md#rotating-secrets) --------------------------------


def test_during_a_rotation_events_signed_with_either_secret_are_accepted_and_others_refused(
    client, endpoint, authenticated_purchase, settings, caplog
):
    settings.STRIPE_WEBHOOK_SECRET_PREVIOUS = "whsec_rotated_out"
    charge, intent = authenticated_purchase
    current = event_for(intent, "payment_intent.succeeded", "evt_signed_current")
    previous = event_for(intent, "payment_intent.succeeded", "evt_signed_previous")
    unknown = event_for(intent, "payment_intent.succeeded", "evt_signed_unknown")
    assert post_event(client, endpoint, current, sign(current, settings.STRIPE_WEBHOOK_SECRET)).status_code == 200
    assert post_event(client, endpoint, previous, sign(previous, "whsec_rotated_out")).status_code == 200
    assert "webhook_signed_with_previous_secret" in caplog.text
    assert post_event(client, endpoint, unknown, sign(unknown, "whsec_someone_else")).status_code == 400
    assert set(Event.objects.values_list("id", flat=True)) >= {"evt_signed_current", "evt_signed_previous"}
    assert not Event.objects.filter(id="evt_signed_unknown").exists()
    endpoint.refresh_from_db()
    assert endpoint.secret == settings.STRIPE_WEBHOOK_SECRET  # the row is never rewritten
    charge.refresh_from_db()
    assert charge.status == Charge.Status.SUCCEEDED


def test_after_a_rotation_the_previous_webhook_secret_is_refused(client, endpoint, authenticated_purchase, settings):
    settings.STRIPE_WEBHOOK_SECRET_PREVIOUS = ""
    charge, intent = authenticated_purchase
    body = event_for(intent, "payment_intent.succeeded", "evt_old_secret")
    assert post_event(client, endpoint, body, sign(body, "whsec_rotated_out")).status_code == 400
    assert not Event.objects.filter(id="evt_old_secret").exists()
    charge.refresh_from_db()
    assert charge.status == Charge.Status.REQUIRES_ACTION
