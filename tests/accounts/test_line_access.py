from django.urls import reverse

from tests.builders import make_line


def test_anonymous_visitor_is_sent_to_login(client, line):
    for url in (reverse("accounts:home"), reverse("accounts:line_detail", args=[line.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))


def test_owner_sees_own_line(customer_client, line):
    response = customer_client.get(reverse("accounts:line_detail", args=[line.pk]))
    assert response.status_code == 200
    assert line.iccid in response.content.decode()


def test_another_customers_line_is_404(client, line, other_customer):
    client.force_login(other_customer)
    assert client.get(reverse("accounts:line_detail", args=[line.pk])).status_code == 404


def test_account_page_lists_only_own_lines(customer_client, line, other_customer):
    foreign = make_line(owner=other_customer)
    body = customer_client.get(reverse("accounts:home")).content.decode()
    assert line.iccid in body or (line.label and line.label in body)
    assert foreign.iccid not in body
