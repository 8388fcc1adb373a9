"""The customer's side of a new eSIM: buying, the "Preparing" page and its status endpoint, the
SM-DP+'s notifications (over the wire from the stand-in), the line page's install status, the
reminder; and who may see what."""

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import Notice
from accounts.services import notices
from payments.models import Charge
from payments.services import on_session
from provisioning import services
from provisioning.models import ProfileOrder

pytestmark = pytest.mark.django_db(transaction=True)
CALLBACK = "/esim/es2plus/handleDownloadProgressInfo"


def released_order(customer, package, card) -> ProfileOrder:
    charge = on_session.purchase_new_line(user=customer, package=package, payment_method_id=card.id)
    return services.advance_order(order_id=ProfileOrder.objects.get(charge=charge).pk)


def notification(order, point: int, *, fci: str, at: str = "2026-01-01T10:00:00Z", status="Executed-Success"):
    return {
        "header": {"functionRequesterIdentifier": "smdp", "functionCallIdentifier": fci},
        "iccid": order.iccid,
        "profileType": "default",
        "timestamp": at,
        "notificationPointId": point,
        "notificationPointStatus": {"status": status},
    }


def post_notification(client, body, secret):
    return client.post(
        CALLBACK, data=json.dumps(body), content_type="application/json", HTTP_X_ES2_CALLBACK_SECRET=secret
    )


def test_buying_a_new_esim_pays_then_shows_the_preparing_page_until_ready(smdp, customer_client, package, card):
    response = customer_client.get(reverse("provisioning:buy", args=[package.pk]))
    assert response.status_code == 200
    assert package.name in response.content.decode()

    response = customer_client.post(reverse("provisioning:buy", args=[package.pk]), {"payment_method": card.id})
    charge = Charge.objects.get(user__email="alice@example.com")
    assert response["Location"] == reverse("provisioning:charge_order", args=[charge.pk])
    order = ProfileOrder.objects.get(charge=charge)
    response = customer_client.get(response["Location"])
    assert response["Location"] == reverse("provisioning:order", args=[order.pk])

    page = customer_client.get(response["Location"]).content.decode()
    assert "Preparing your eSIM" in page
    status = customer_client.get(reverse("provisioning:order_status", args=[order.pk])).json()
    assert (status["status"], status["ready"]) == ("pending", False)

    services.advance_order(order_id=order.pk)
    status = customer_client.get(reverse("provisioning:order_status", args=[order.pk])).json()
    order.refresh_from_db()
    assert status["ready"] is True
    assert status["lpa"] == f"LPA:1$smdp.standin.test${order.matching_id}"
    assert "esimsetup.apple.com/esim_qrcode_provisioning?carddata=LPA%3A1%24" in status["ios_install_url"]
    assert status["qr_svg"].startswith("<svg")
    page = customer_client.get(reverse("provisioning:order", args=[order.pk])).content.decode()
    assert "Set up auto-renewal" in page
    assert reverse("renewals:rule", args=[order.line_id]) in page


def test_a_card_asking_for_3d_secure_goes_to_the_authentication_page(smdp, customer_client, package, add_card):
    secure = add_card("4000002500003155")
    response = customer_client.post(reverse("provisioning:buy", args=[package.pk]), {"payment_method": secure.id})
    charge = Charge.objects.get(user__email="alice@example.com")
    assert charge.status == Charge.Status.REQUIRES_ACTION
    assert response["Location"] == reverse("payments:authenticate", args=[charge.pk])
    assert not ProfileOrder.objects.exists()  # no order before the money is taken


def test_the_smdp_notifications_over_the_wire_move_the_line_page_to_installed(
    smdp, customer, customer_client, package, card, live_server, callback_secret
):
    order = released_order(customer, package, card)
    url = live_server.url + CALLBACK
    assert smdp.device(order.iccid, "download", callbackUrl=url)["callbackStatus"] == 204
    assert smdp.device(order.iccid, "install", callbackUrl=url)["callbackStatus"] == 204
    order.refresh_from_db()
    assert order.status == ProfileOrder.Status.INSTALLED
    assert order.downloaded_at and order.installed_at

    page = customer_client.get(reverse("accounts:line_detail", args=[order.line_id])).content.decode()
    assert "Install status" in page and "Installed" in page


def test_notifications_are_idempotent_and_a_late_download_never_undoes_installed(
    smdp, customer, client, package, card, callback_secret
):
    order = released_order(customer, package, card)
    installed = notification(order, 4, fci="n-2", at="2026-01-01T10:05:00Z")
    assert post_notification(client, installed, callback_secret).status_code == 204
    assert post_notification(client, installed, callback_secret).status_code == 204
    late = notification(order, 3, fci="n-1", at="2026-01-01T10:01:00Z")
    assert post_notification(client, late, callback_secret).status_code == 204

    order.refresh_from_db()
    assert order.status == ProfileOrder.Status.INSTALLED
    assert order.installed_at.isoformat() == "2026-01-01T10:05:00+00:00"
    assert order.downloaded_at.isoformat() == "2026-01-01T10:01:00+00:00"
    assert order.calls.filter(function="handleDownloadProgressInfo").count() == 2

    disabled = notification(order, 7, fci="n-4", at="2026-01-02T09:00:00Z")
    enabled_earlier = notification(order, 6, fci="n-3", at="2026-01-02T08:00:00Z")
    post_notification(client, disabled, callback_secret)
    post_notification(client, enabled_earlier, callback_secret)
    order.refresh_from_db()
    assert order.device_state == "disabled"  # the later event wins, whatever arrives last
    assert order.enabled_at and order.disabled_at


def test_the_callback_refuses_unauthenticated_and_malformed_calls(smdp, customer, client, package, card):
    order = released_order(customer, package, card)
    body = notification(order, 4, fci="n-1")
    assert client.post(CALLBACK, data=json.dumps(body), content_type="application/json").status_code == 401
    response = post_notification(client, body, "wrong-secret")
    assert response.status_code == 401 and response.json() == {"error": "unauthenticated"}
    order.refresh_from_db()
    assert order.status == ProfileOrder.Status.RELEASED
    from django.conf import settings

    assert post_notification(client, {"iccid": ""}, settings.SMDP_CALLBACK_SECRET).status_code == 400
    response = client.post(
        CALLBACK,
        data=b"{not json",
        content_type="application/json",
        HTTP_X_ES2_CALLBACK_SECRET=settings.SMDP_CALLBACK_SECRET,
    )
    assert response.status_code == 400


def test_another_customers_order_and_status_are_404_and_anonymous_must_log_in(
    smdp, customer, other_customer, client, package, card
):
    order = released_order(customer, package, card)
    client.force_login(other_customer)
    assert client.get(reverse("provisioning:order", args=[order.pk])).status_code == 404
    assert client.get(reverse("provisioning:order_status", args=[order.pk])).status_code == 404
    assert client.get(reverse("provisioning:charge_order", args=[order.charge_id])).status_code == 404
    assert client.get(reverse("accounts:line_detail", args=[order.line_id])).status_code == 404
    client.logout()
    for url in (
        reverse("provisioning:buy", args=[package.pk]),
        reverse("provisioning:order", args=[order.pk]),
        reverse("provisioning:order_status", args=[order.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
        assert "next=" in response["Location"]


def test_an_order_not_installed_after_the_reminder_delay_gets_one_reminder(smdp, customer, package, card, settings):
    order = released_order(customer, package, card)
    later = timezone.now() + settings.PROVISIONING_INSTALL_REMINDER_AFTER + timedelta(minutes=1)
    assert services.send_install_reminders(now=timezone.now()) == []
    assert services.send_install_reminders(now=later) == [order.pk]
    assert services.send_install_reminders(now=later + timedelta(days=5)) == []
    notices.send_due_notices(now=later)
    assert Notice.objects.get(kind=services.REMINDER).status == Notice.Status.SENT
    assert "not installed yet" in mail.outbox[-1].body


def test_a_notification_with_a_timestamp_without_zone_is_read_as_utc(smdp, customer, client, package, card):
    order = released_order(customer, package, card)
    body = notification(order, 3, fci="n-naive", at="2026-01-01T10:00:00")
    from django.conf import settings

    assert post_notification(client, body, settings.SMDP_CALLBACK_SECRET).status_code == 204
    order.refresh_from_db()
    assert order.downloaded_at.isoformat() == "2026-01-01T10:00:00+00:00"


def test_the_buy_page_offers_only_the_methods_the_operator_takes_in_the_packages_currency(
    smdp, customer, customer_client, package, card
):
    """A SEPA mandate saved for euro payments is neither listed nor accepted for a CNY plan
    (settings.PAYMENT_METHOD_TYPES_BY_CURRENCY, docs/payment-methods.md)."""
    from payments.selectors import payment_methods_for_user
    from tests.payments.test_purchase import bind_sepa

    assert package.currency == "CNY"
    bind_sepa(customer_client, "DE89370400440532013000")
    sepa = next(m for m in payment_methods_for_user(customer) if m.type == "sepa_debit")
    page = customer_client.get(reverse("provisioning:buy", args=[package.pk])).content.decode()
    assert f'value="{sepa.id}"' not in page and f'value="{card.id}"' in page
    response = customer_client.post(reverse("provisioning:buy", args=[package.pk]), {"payment_method": sepa.id})
    assert response.status_code == 400
    assert not Charge.objects.filter(user=customer).exists()
