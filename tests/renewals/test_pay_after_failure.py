"""After a failed renewal: the pay-now page preselects a card that did not just fail, and after
paying with another card the customer can make it the one auto-renewal charges, in one click."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from payments.models import Charge
from renewals.models import Renewal, RenewalRule
from tests.builders import make_charge, make_renewal


def failed_renewal(rule, customer, failing_method_id):
    renewal = make_renewal(
        line=rule.line,
        package=rule.package,
        rule=rule,
        status=Renewal.Status.RETRY_SCHEDULED,
        next_attempt_at=timezone.now() + timedelta(hours=1),
    )
    make_charge(
        user=customer,
        line=rule.line,
        package=rule.package,
        renewal=renewal,
        attempt=1,
        status=Charge.Status.FAILED,
        payment_method_id=failing_method_id,
    )
    return renewal


def pay_url(renewal):
    return reverse("payments:pay_renewal", args=[renewal.pk])


def test_pay_page_preselects_a_card_that_did_not_just_fail(customer_client, customer, rule, add_card):
    good = add_card("4242424242424242", default=False)
    failing = add_card("4000000000000341")  # the default, declined by the renewal attempt
    renewal = failed_renewal(rule, customer, failing.id)
    form = customer_client.get(pay_url(renewal)).context["form"]
    assert form.fields["payment_method"].initial == good.id


def test_pay_page_preselects_nothing_when_every_saved_card_just_failed(customer_client, customer, rule, add_card):
    failing = add_card("4000000000000341")
    renewal = failed_renewal(rule, customer, failing.id)
    response = customer_client.get(pay_url(renewal))
    assert response.context["form"].fields["payment_method"].initial is None
    assert "Add a payment method" in response.content.decode()


def test_after_paying_with_another_card_one_click_makes_it_the_auto_renewal_card(
    customer_client, customer, rule, add_card
):
    good = add_card("4242424242424242", default=False)
    failing = add_card("4000000000000341")
    renewal = failed_renewal(rule, customer, failing.id)
    response = customer_client.post(pay_url(renewal), {"payment_method": good.id})
    paid_url = reverse("renewals:paid", args=[renewal.pk])
    assert response.status_code == 302 and response["Location"] == paid_url
    body = customer_client.get(paid_url).content.decode()
    assert "Use Visa •••• 4242 for auto-renewal" in body
    response = customer_client.post(paid_url)
    assert response.status_code == 302
    assert RenewalRule.objects.get(pk=rule.pk).payment_method_id == good.id
    assert "Use Visa" not in customer_client.get(paid_url).content.decode()  # nothing left to offer


def test_paid_page_is_the_owners_only(client, customer, other_customer, rule, add_card):
    good = add_card("4242424242424242")
    renewal = failed_renewal(rule, customer, "pm_gone")
    make_charge(
        user=customer,
        line=rule.line,
        package=rule.package,
        renewal=renewal,
        attempt=2,
        status=Charge.Status.SUCCEEDED,
        payment_method_id=good.id,
    )
    paid_url = reverse("renewals:paid", args=[renewal.pk])
    for response in (client.get(paid_url), client.post(paid_url)):
        assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))
    client.force_login(other_customer)
    assert client.get(paid_url).status_code == 404
    assert client.post(paid_url).status_code == 404
    assert RenewalRule.objects.get(pk=rule.pk).payment_method_id == ""
