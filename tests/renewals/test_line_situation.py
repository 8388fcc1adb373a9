"""Each line shows its current situation once: one banner, styled by severity, with the one action
that settles it; past events (a restored line, a renewal that went through) give none. The line
says whether auto-renewal is on and names the card it charges. docs/pages.md."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Line
from payments.models import Charge
from renewals.models import Renewal
from tests.builders import make_charge, make_line, make_renewal, make_rule
from tests.payments.conftest import create_card


def banners(body: str) -> list[str]:
    return re.findall(r'<div class="banner (\w+)" role="\w+" data-situation="(\w+)">', body)


def pages(client, line) -> list[str]:
    return [
        client.get(url).content.decode()
        for url in (
            reverse("accounts:home"),
            reverse("accounts:line_detail", args=[line.pk]),
            reverse("renewals:rule", args=[line.pk]),
        )
    ]


def test_a_restored_line_now_out_of_data_shows_only_out_of_data(customer_client, line, package):
    renewal = make_renewal(line=line, package=package, status=Renewal.Status.SUCCEEDED, resumed_line=True)
    Renewal.objects.filter(pk=renewal.pk).update(completed_at=timezone.now())
    Line.objects.filter(pk=line.pk).update(status=Line.Status.DATA_EXHAUSTED, data_remaining_bytes=0)
    for body in pages(customer_client, line):
        assert banners(body) == [("error", "out_of_data")]
        assert "restored" not in body and "was renewed" not in body
        assert f'href="{reverse("payments:buy", args=[line.pk])}">Buy data' in body


@pytest.mark.parametrize(
    ("line_status", "renewal_status", "suspended", "expected", "action"),
    [
        (Line.Status.SUSPENDED, Renewal.Status.FAILED, True, ("error", "suspended_unpaid"), "Pay now"),
        (Line.Status.SUSPENDED, None, False, ("error", "suspended"), None),
        (
            Line.Status.ACTIVE,
            Renewal.Status.REQUIRES_ACTION,
            False,
            ("warning", "needs_authentication"),
            "Confirm payment",
        ),
        (Line.Status.ACTIVE, Renewal.Status.AWAITING_METHOD, False, ("warning", "needs_method"), "Add a card"),
        (Line.Status.ACTIVE, Renewal.Status.RETRY_SCHEDULED, False, ("warning", "retry_scheduled"), "Pay now"),
        (Line.Status.DATA_EXHAUSTED, Renewal.Status.FAILED, False, ("error", "renewal_failed"), "Pay now"),
        (Line.Status.DATA_EXHAUSTED, Renewal.Status.DUE, False, ("info", "renewing"), None),
        (Line.Status.EXPIRED, None, False, ("error", "expired"), "Buy a package"),
        (Line.Status.ACTIVE, Renewal.Status.FAILED, False, None, None),  # failed, since made good
        (Line.Status.ACTIVE, Renewal.Status.SUCCEEDED, False, None, None),  # history, not a banner
    ],
)
def test_each_situation_gives_one_banner_with_its_action(
    customer_client, line, package, line_status, renewal_status, suspended, expected, action
):
    if renewal_status is not None:
        make_renewal(
            line=line,
            package=package,
            status=renewal_status,
            line_suspended_at=timezone.now() if suspended else None,
            next_attempt_at=timezone.now() + timedelta(hours=3),
        )
    Line.objects.filter(pk=line.pk).update(status=line_status)
    body = customer_client.get(reverse("accounts:line_detail", args=[line.pk])).content.decode()
    assert banners(body) == ([expected] if expected else [])
    if action:
        assert re.search(rf'class="button banner-action" href="[^"]+">{action}</a>', body)


def test_a_purchase_waiting_for_the_bank_links_to_its_authentication(customer_client, customer, line, package):
    charge = make_charge(user=customer, line=line, package=package, status=Charge.Status.REQUIRES_ACTION)
    body = customer_client.get(reverse("accounts:home")).content.decode()
    assert banners(body) == [("warning", "purchase_needs_authentication")]
    assert f'href="{reverse("payments:authenticate", args=[charge.pk])}">Confirm payment' in body


def test_another_customers_situation_is_not_shown(client, line, package, other_customer):
    make_renewal(line=line, package=package, status=Renewal.Status.REQUIRES_ACTION)
    make_line(owner=other_customer, package=package)
    client.force_login(other_customer)
    assert banners(client.get(reverse("accounts:home")).content.decode()) == []


def test_line_card_says_auto_renewal_is_on_and_names_the_card(customer_client, customer, line, package):
    from payments import gateways

    body = customer_client.get(reverse("accounts:home")).content.decode()
    assert "Auto-renewal is off." in body
    stripe_customer = gateways.ensure_customer(customer)
    method = gateways.attach_payment_method(
        customer_id=stripe_customer.id, payment_method_id=create_card(exp_month=12, exp_year=2030)
    )
    gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=method.id)
    make_rule(line=line, package=package)
    for body in pages(customer_client, line)[:2]:
        assert "Auto-renewal is on, charging Visa •••• 4242, expires 12/30." in body
