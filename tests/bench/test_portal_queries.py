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


def statements_for(client, url) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


@pytest.mark.django_db
def test_account_and_line_pages_read_the_customers_lines_once(client, customer):
    # The banners and the auto-renewal state reuse the lines the view already read
    # (docs/portal-performance.md): a second read of the same rows is a round trip for nothing.
    package = make_package()
    line = make_line(owner=customer, package=package)
    make_line(owner=customer, package=package)
    client.force_login(customer)

    for url in (reverse("accounts:home"), reverse("accounts:line_detail", args=[line.pk])):
        reads = [sql for sql in statements_for(client, url) if sql.startswith('SELECT "accounts_line"."id"')]
        assert len(reads) == 1, (url, reads)


@pytest.mark.django_db
def test_history_page_reads_the_line_filter_without_a_server_side_cursor(client, customer):
    # A held cursor (DECLARE … WITH HOLD, then FETCH and CLOSE) is three round trips and a
    # materialised result for a handful of lines.
    make_line(owner=customer, package=make_package())
    client.force_login(customer)

    statements = statements_for(client, reverse("payments:history"))

    assert not [sql for sql in statements if sql.startswith("DECLARE")], statements
