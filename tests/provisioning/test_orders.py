"""An eSIM order from its payment to a released profile, over the wire to the SM-DP+ stand-in:
the order commits with the payment, a down SM-DP+ delays it without losing or doubling it, a
refusal refunds it, and a worker stopped between DownloadOrder and ConfirmOrder resumes once."""

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Line, Notice
from accounts.services import notices
from payments.models import Charge
from payments.services import on_session, refunds
from provisioning import es2plus, services
from provisioning.models import Es2Call, Profile, ProfileOrder

pytestmark = pytest.mark.django_db(transaction=True)


def buy(customer, package, card) -> Charge:
    return on_session.purchase_new_line(user=customer, package=package, payment_method_id=card.id)


def test_a_paid_purchase_orders_a_profile_and_releases_it_with_a_line(smdp, customer, package, card):
    charge = buy(customer, package, card)

    assert charge.status == Charge.Status.SUCCEEDED
    order = ProfileOrder.objects.get(charge=charge)
    order = services.advance_order(order_id=order.pk)

    assert order.status == ProfileOrder.Status.RELEASED
    assert order.activation_code == f"LPA:1$smdp.standin.test${order.matching_id}"
    line = Line.objects.get(pk=order.line_id)
    assert (line.owner_id, line.iccid, line.package_id) == (customer.pk, order.iccid, package.pk)
    assert line.data_remaining_bytes == package.data_allowance_bytes
    assert [c.function for c in order.calls.all()] == ["downloadOrder", "confirmOrder"]
    assert [c["function"] for c in smdp.calls()] == ["downloadOrder", "confirmOrder"]
    assert smdp.calls("downloadOrder")[0]["fci"] == order.function_call_id("downloadOrder")
    notices.send_due_notices()
    assert Notice.objects.get(kind=services.READY).status == Notice.Status.SENT
    assert order.activation_code in mail.outbox[-1].body


def test_the_new_esim_is_named_as_a_chinese_customer_reads_the_package(smdp, customer, package, card):
    customer.language = "zh-hans"
    customer.save(update_fields=["language"])
    package.name_zh_hans = "旅行套餐"
    package.save(update_fields=["name_zh_hans"])
    order = ProfileOrder.objects.get(charge=buy(customer, package, card))
    order = services.advance_order(order_id=order.pk)
    assert Line.objects.get(pk=order.line_id).label == "旅行套餐"


def test_smdp_down_at_purchase_keeps_the_order_and_places_it_later_once(smdp, customer, package, card):
    smdp.fail("down")
    charge = buy(customer, package, card)
    order = ProfileOrder.objects.get(charge=charge)

    order = services.advance_order(order_id=order.pk)
    assert order.status == ProfileOrder.Status.PENDING
    assert order.attempts == 1 and order.next_attempt_at > timezone.now()
    assert services.sweep_orders() == []  # not due yet: the back-off holds

    smdp.fail("ok")
    later = order.next_attempt_at + timezone.timedelta(seconds=1)
    assert services.sweep_orders(now=later) == [order.pk]
    assert services.sweep_orders(now=later) == []

    order.refresh_from_db()
    assert order.status == ProfileOrder.Status.RELEASED
    effects = [c["effect"] for c in smdp.calls("downloadOrder")]
    assert effects == ["Executed-Success"]  # the 503 never reached the pool; one order placed
    assert Charge.objects.get(pk=charge.pk).status == Charge.Status.SUCCEEDED


def test_a_slow_smdp_is_a_time_out_retried_with_the_same_identifier(smdp, customer, package, card, settings):
    settings.SMDP_TIMEOUT_SECONDS = 0.5
    smdp.fail("slow", seconds=2, times=1)
    order = ProfileOrder.objects.get(charge=buy(customer, package, card))

    order = services.advance_order(order_id=order.pk)
    assert order.status == ProfileOrder.Status.PENDING and order.attempts == 1
    assert [c["effect"] for c in smdp.calls("downloadOrder")] == ["Executed-Success"]  # placed, answer lost

    order = services.advance_order(order_id=order.pk, now=order.next_attempt_at)
    assert order.status == ProfileOrder.Status.RELEASED
    downloads = smdp.calls("downloadOrder")
    # The slow call did happen at the SM-DP+; the retry with the same identifier was a replay.
    assert [c["effect"] for c in downloads] == ["Executed-Success", "replayed"]
    assert len({c["fci"] for c in downloads}) == 1
    assert len([p for p in smdp.state()["profiles"] if p["state"] != "available"]) == 1


def test_no_profile_available_refunds_alerts_and_tells_the_customer(smdp, customer, package, card):
    smdp.fail("no_profile")
    charge = buy(customer, package, card)
    order = services.advance_order(order_id=ProfileOrder.objects.get(charge=charge).pk)

    assert order.status == ProfileOrder.Status.FAILED
    assert order.failure_code == "no_profile"
    call = order.calls.get(function="downloadOrder")
    assert (call.subject_code, call.reason_code) == es2plus.NO_PROFILE
    charge.refresh_from_db()
    assert charge.status == Charge.Status.REFUNDED
    assert charge.refunded_minor == charge.amount_minor
    assert not Line.objects.filter(owner=customer).exists()
    notices.send_due_notices()
    assert Notice.objects.get(kind=services.FAILED, user=customer).status == Notice.Status.SENT
    assert "refunded" in mail.outbox[-1].body
    # The operator sees it on the operations page until resolved.
    from console import operations

    assert list(operations.failed_esim_orders()) == [order]
    assert refunds.refund_due_charges() == []


def test_a_worker_stopped_between_download_and_confirm_resumes_once(smdp, customer, package, card):
    order = ProfileOrder.objects.get(charge=buy(customer, package, card))

    # The worker commits DownloadOrder's answer and dies before ConfirmOrder.
    order = services.advance_order(order_id=order.pk, max_steps=1)
    assert order.status == ProfileOrder.Status.DOWNLOAD_ORDERED

    # A worker killed after the SM-DP+ answered ConfirmOrder but before our commit: the call was
    # made (with the order's identifier) and its answer lost.
    es2plus.confirm_order(function_call_id=order.function_call_id("confirmOrder"), iccid=order.iccid)

    assert services.sweep_orders() == [order.pk]
    order.refresh_from_db()
    assert order.status == ProfileOrder.Status.RELEASED
    assert [c["effect"] for c in smdp.calls("downloadOrder")] == ["Executed-Success"]
    assert [c["effect"] for c in smdp.calls("confirmOrder")] == ["Executed-Success", "replayed"]
    assert Line.objects.filter(owner=customer).count() == 1
    assert services.sweep_orders() == []


def test_the_same_payment_recorded_twice_makes_one_order(smdp, customer, package, card):
    from payments.gateways import ChargeOutcome, OutcomeKind
    from payments.services import recording

    charge = buy(customer, package, card)
    recording.record_outcome(
        charge_id=charge.pk, outcome=ChargeOutcome(OutcomeKind.SUCCEEDED, charge.payment_intent_id)
    )
    assert ProfileOrder.objects.filter(charge=charge).count() == 1


def test_pool_mode_orders_an_imported_iccid_and_fails_refunded_when_the_pool_is_empty(
    smdp, customer, package, card, settings
):
    settings.PROVISIONING_PROFILE_SOURCE = "pool"
    services.import_pool(iccids=["8999000000000000011"])
    smdp.post("/admin/pool", {"iccids": ["8999000000000000011"]})

    first = services.advance_order(order_id=ProfileOrder.objects.get(charge=buy(customer, package, card)).pk)
    assert first.status == ProfileOrder.Status.RELEASED
    assert first.iccid == "8999000000000000011"
    assert smdp.calls("downloadOrder")[0]["answer"]["iccid"] == "8999000000000000011"
    assert Profile.objects.get().status == Profile.Status.ASSIGNED

    second = services.advance_order(order_id=ProfileOrder.objects.get(charge=buy(customer, package, card)).pk)
    assert (second.status, second.failure_code) == (ProfileOrder.Status.FAILED, "pool_empty")
    assert Charge.objects.get(pk=second.charge_id).status == Charge.Status.REFUNDED
    assert Es2Call.objects.filter(order=second).count() == 0
