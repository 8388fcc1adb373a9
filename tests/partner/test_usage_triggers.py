"""A usage batch that takes a line below its renewal threshold starts the renewal at once
(renewals.services.triggers.evaluate_triggers), not at the next beat."""

import pytest

from accounts.models import Line
from payments import gateways
from renewals.models import Renewal
from tests.builders import MB, make_line, make_rule
from tests.partner.helpers import celery_worker, record, signed_post, wait_until
from tests.payments.conftest import create_card


def test_crossing_the_threshold_opens_a_renewal_within_the_request(client, customer, package):
    line = make_line(owner=customer, package=package, data_remaining_bytes=600 * MB)
    make_rule(line=line, package=package)
    assert signed_post(client, {"records": [record(line, id="r-1", bytes=150 * MB)]}).status_code == 200
    renewal = Renewal.objects.get(line=line)
    assert (renewal.trigger, renewal.package, renewal.amount_minor) == ("data", package, package.price_minor)
    assert renewal.status in Renewal.OPEN


def test_staying_above_the_threshold_opens_nothing(client, customer, package):
    line = make_line(owner=customer, package=package, data_remaining_bytes=600 * MB)
    make_rule(line=line, package=package)
    signed_post(client, {"records": [record(line, id="r-1", bytes=50 * MB)]})
    assert not Renewal.objects.exists()


def test_a_disabled_rule_opens_nothing(client, customer, package):
    line = make_line(owner=customer, package=package, data_remaining_bytes=600 * MB)
    make_rule(line=line, package=package, enabled=False)
    signed_post(client, {"records": [record(line, id="r-1", bytes=500 * MB)]})
    assert not Renewal.objects.exists()


def test_a_resent_batch_opens_no_second_renewal(client, customer, package):
    line = make_line(owner=customer, package=package, data_remaining_bytes=600 * MB)
    make_rule(line=line, package=package)
    body = {"records": [record(line, id="r-1", bytes=150 * MB)]}
    signed_post(client, body)
    signed_post(client, body)
    signed_post(client, {"records": [record(line, id="r-2", bytes=1 * MB)]})
    assert Renewal.objects.filter(line=line).count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_line_driven_below_its_threshold_is_renewed_by_a_worker_within_seconds(customer, package, tmp_path):
    """README's demo: a signed batch, a real worker, localstripe's 4242 card: data is back in seconds."""
    stripe_customer = gateways.ensure_customer(customer)
    method = gateways.attach_payment_method(
        customer_id=stripe_customer.id, payment_method_id=create_card("4242424242424242")
    )
    gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=method.id)
    line = make_line(owner=customer, package=package, data_remaining_bytes=600 * MB, data_used_bytes=0)
    make_rule(line=line, package=package)
    from django.test import Client

    log = tmp_path / "worker.log"
    with celery_worker(log):
        response = signed_post(Client(), {"records": [record(line, id="demo-1", bytes=200 * MB)]})
        assert response.json() == {"accepted": 1, "duplicates": 0}

        def renewed():
            return Renewal.objects.filter(line=line, status=Renewal.Status.SUCCEEDED).exists()

        # The worker runs no beat: the renewal can only have come from the usage batch itself, not
        # from a sweep, which is what "within seconds" means without timing the machine.
        assert wait_until(renewed, timeout=120), log.read_text()[-4000:]
    line.refresh_from_db()
    assert line.data_remaining_bytes == 400 * MB + package.data_allowance_bytes
    assert line.status == Line.Status.ACTIVE
