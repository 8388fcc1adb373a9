"""Money case 1: a customer who pays for a line that is out of data or suspended gets it back at
the network, through the purchase path itself (not only through a renewal)."""

from django.urls import reverse
from django.utils import timezone

from accounts.models import Line, NetworkCommand
from accounts.services.line_status import suspend_line
from payments.models import Charge
from tests.builders import make_line


def buy(client, line, package, method_id):
    return client.post(reverse("payments:buy", args=[line.pk]), {"package": package.pk, "payment_method": method_id})


def commands(line) -> list[str]:
    return list(NetworkCommand.objects.filter(line=line).order_by("id").values_list("command", flat=True))


def the_card(customer):
    from payments.selectors import payment_methods_for_user

    (method,) = payment_methods_for_user(customer)
    return method


def test_buying_for_a_line_out_of_data_unblocks_its_data_at_the_network(customer, customer_client, bind_card, package):
    line = make_line(owner=customer, package=package, status=Line.Status.DATA_EXHAUSTED, data_remaining_bytes=0)
    bind_card("4242424242424242")
    buy(customer_client, line, package, the_card(customer).id)
    assert Charge.objects.get(user=customer).status == Charge.Status.SUCCEEDED
    line.refresh_from_db()
    assert line.status == Line.Status.ACTIVE
    assert commands(line) == ["unblock_data"]


def test_buying_for_a_line_an_operator_suspended_keeps_it_suspended_with_the_data_paid_for(
    customer, customer_client, bind_card, package
):
    line = make_line(owner=customer, package=package, data_remaining_bytes=0)
    assert suspend_line(line_id=line.pk, reason="fraud check", actor=None, now=timezone.now())
    bind_card("4242424242424242")
    buy(customer_client, line, package, the_card(customer).id)
    assert Charge.objects.get(user=customer).status == Charge.Status.SUCCEEDED
    line.refresh_from_db()
    assert (line.status, line.data_remaining_bytes) == (Line.Status.SUSPENDED, package.data_allowance_bytes)
    assert commands(line) == ["suspend"]
