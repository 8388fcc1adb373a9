"""Bench 5's pages (account, line, transaction history) send the same number of SQL statements
whatever the number of the customer's lines and charges: the portal bench's latency can then only
grow with the database, never with a customer's history (issue 6)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from payments.models import Charge
from tests.builders import make_charge, make_line, make_package


def queries_for(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


def counts(client, customer, *, lines: int, charges_per_line: int) -> dict[str, int]:
    package = make_package()
    made = [make_line(owner=customer, package=package) for _ in range(lines)]
    for line in made:
        for _ in range(charges_per_line):
            make_charge(user=customer, line=line, package=package, status=Charge.Status.SUCCEEDED)
    return {
        "account": queries_for(client, reverse("accounts:home")),
        "line": queries_for(client, reverse("accounts:line_detail", args=[made[0].pk])),
        "history": queries_for(client, reverse("payments:history")),
    }


@pytest.mark.django_db
def test_portal_pages_send_as_many_queries_for_one_line_as_for_many_lines_and_charges(client, customer, other_customer):
    client.force_login(customer)
    few = counts(client, customer, lines=1, charges_per_line=1)
    client.force_login(other_customer)
    many = counts(client, other_customer, lines=8, charges_per_line=6)
    assert many == few
