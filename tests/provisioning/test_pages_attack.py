"""The buy form sent twice (a double click, the browser's resend after a slow answer): one payment
and one eSIM order, not two (docs/provisioning.md, "The path of a purchase")."""

import re

import pytest
from django.urls import reverse

from payments.models import Charge
from provisioning.models import ProfileOrder

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_same_buy_form_submitted_twice_charges_once(smdp, customer_client, package, card):
    page = customer_client.get(reverse("provisioning:buy", args=[package.pk])).content.decode()
    submission = re.search(r'name="submission" value="([0-9a-f]+)"', page).group(1)
    form = {"payment_method": card.id, "submission": submission}

    first = customer_client.post(reverse("provisioning:buy", args=[package.pk]), form)
    second = customer_client.post(reverse("provisioning:buy", args=[package.pk]), form)

    assert Charge.objects.filter(purpose=Charge.Purpose.PURCHASE).count() == 1
    assert ProfileOrder.objects.count() == 1
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]


def test_two_buy_pages_are_two_purchases(smdp, customer_client, package, card):
    """Two tabs, each its own form: the customer meant two eSIMs (each shown its own order)."""
    url = reverse("provisioning:buy", args=[package.pk])
    tokens = [
        re.search(r'name="submission" value="([0-9a-f]+)"', customer_client.get(url).content.decode()).group(1)
        for _ in range(2)
    ]
    for token in tokens:
        assert customer_client.post(url, {"payment_method": card.id, "submission": token}).status_code == 302
    assert ProfileOrder.objects.count() == 2


def test_a_forged_submission_token_is_a_form_error_not_a_500(customer_client, package, card):
    url = reverse("provisioning:buy", args=[package.pk])
    response = customer_client.post(url, {"payment_method": card.id, "submission": "x" * 500})
    assert response.status_code == 400
    assert not Charge.objects.exists()
