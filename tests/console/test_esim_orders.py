"""eSIM orders in the admin and on the operations page: the ES2+ history, retry and
cancel-with-refund as confirmed actions with their history, failed orders and a low pool shown."""

# ruff: noqa: F811  (the fixtures imported below are parameters of the tests)

import pytest
from django.contrib.contenttypes.models import ContentType

from accounts.models import ChangeRecord, Line
from payments.models import Charge
from payments.services import on_session
from provisioning import services
from provisioning.models import ProfileOrder
from tests.console.conftest import run_action
from tests.payments.conftest import add_card, stripe_customer  # noqa: F401  (fixtures)
from tests.provisioning.conftest import SmdpControl, card, smdp  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = "/admin/provisioning/profileorder/"


def order_for(customer, package, card) -> ProfileOrder:  # noqa: F811
    charge = on_session.purchase_new_line(user=customer, package=package, payment_method_id=card.id)
    return ProfileOrder.objects.get(charge=charge)


def test_an_order_page_shows_its_es2_calls(superuser_client, smdp, customer, package, card):  # noqa: F811
    client, _user = superuser_client
    order = services.advance_order(order_id=order_for(customer, package, card).pk)
    page = client.get(f"{CHANGELIST}{order.pk}/change/").content.decode()
    assert "downloadOrder" in page and "confirmOrder" in page
    assert order.function_call_id("downloadOrder") in page


def test_retry_now_then_cancel_with_refund_are_confirmed_and_recorded(
    superuser_client,
    smdp,
    customer,
    package,
    card,  # noqa: F811
):
    client, operator = superuser_client
    smdp.fail("down")
    order = services.advance_order(order_id=order_for(customer, package, card).pk)
    assert order.attempts == 1

    smdp.fail("ok")
    run_action(client, CHANGELIST, "retry_orders", [order.pk], reason="SM-DP+ back")  # confirmation, then yes
    order.refresh_from_db()
    assert order.next_attempt_at <= order.calls.get(function="operator_retry").created_at
    order = services.advance_order(order_id=order.pk)
    assert order.status == ProfileOrder.Status.RELEASED

    run_action(client, CHANGELIST, "cancel_and_refund_orders", [order.pk], reason="never installed")
    order.refresh_from_db()
    assert order.status == ProfileOrder.Status.CANCELLED
    assert Charge.objects.get(pk=order.charge_id).status == Charge.Status.REFUNDED
    assert Line.objects.get(pk=order.line_id).status == Line.Status.TERMINATED
    assert [c["function"] for c in smdp.calls()][-1] == "cancelOrder"
    actions = set(
        ChangeRecord.objects.filter(
            content_type=ContentType.objects.get_for_model(ProfileOrder), object_id=str(order.pk)
        ).values_list("action", flat=True)
    )
    assert actions == {"retried", "cancelled"}


def test_an_installed_order_cannot_be_cancelled(superuser_client, smdp, customer, package, card):  # noqa: F811
    client, _user = superuser_client
    order = services.advance_order(order_id=order_for(customer, package, card).pk)
    ProfileOrder.objects.filter(pk=order.pk).update(status="installed", downloaded_at=order.released_at)
    run_action(client, CHANGELIST, "cancel_and_refund_orders", [order.pk], reason="x")
    assert ProfileOrder.objects.get(pk=order.pk).status == ProfileOrder.Status.INSTALLED
    assert Charge.objects.get(pk=order.charge_id).status == Charge.Status.SUCCEEDED


def test_failed_orders_and_a_low_pool_show_on_the_operations_page(
    support_client,
    smdp,
    customer,
    package,
    card,
    settings,  # noqa: F811
):
    client, _user = support_client
    settings.PROVISIONING_PROFILE_SOURCE = "pool"
    settings.PROVISIONING_LOW_POOL = 5
    services.import_pool(iccids=["8999000000000000021"])
    smdp.fail("no_profile")
    order = services.advance_order(order_id=order_for(customer, package, card).pk)
    assert order.status == ProfileOrder.Status.FAILED

    page = client.get("/admin/operations/")
    assert list(page.context["esim_failed"]) == [order]
    text = page.content.decode()
    assert "ops-esim-pool-low" in text
    services.resolve_alert(order_id=order.pk)
    assert list(client.get("/admin/operations/").context["esim_failed"]) == []
