"""A customer sees on the portal home and the line page when a renewal needs them."""

from django.urls import reverse

from renewals.models import Renewal


def _open_renewal(line, package, status):
    return Renewal.objects.create(
        line=line, package=package, amount_minor=package.price_minor, currency=package.currency, status=status
    )


def test_renewal_needing_action_shows_a_pay_now_banner_on_home_and_line_page(customer_client, line, package):
    renewal = _open_renewal(line, package, Renewal.Status.REQUIRES_ACTION)
    for url in (reverse("accounts:home"), reverse("accounts:line_detail", args=[line.pk])):
        body = customer_client.get(url).content.decode()
        assert "needs your action" in body
        assert reverse("payments:pay_renewal", args=[renewal.pk]) in body


def test_another_customers_renewal_is_not_shown(client, line, package, other_customer):
    _open_renewal(line, package, Renewal.Status.REQUIRES_ACTION)
    client.force_login(other_customer)
    assert "needs your action" not in client.get(reverse("accounts:home")).content.decode()
