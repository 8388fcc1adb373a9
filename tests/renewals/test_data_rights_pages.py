"""The data-rights pages (docs/data-rights.md): the customer's download holds their data and
nothing of another customer's; closing from the settings asks to sign in again, then closes; the
operator's download and closure need their own permissions and leave history. Access: anonymous
visitors go to the login page (the portal's matrix in tests/security covers the rest)."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import ChangeRecord, Line, Notice, User
from partner.services.usage import UsageInput, ingest_usage
from payments.models import Charge
from tests.builders import make_charge, make_line, make_renewal, make_rule
from tests.console.conftest import admin_client_for, run_action

PASSWORD = "correct horse battery"  # tests.builders.make_user's


def _download(client, url: str, *, method: str = "get") -> dict:
    response = getattr(client, method)(url)
    assert response.status_code == 200, response
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith('attachment; filename="esimsite-data-')
    return json.loads(b"".join(response.streaming_content))


def _usage(line, n: int, size: int) -> None:
    """n partner records, through the ingestion (which keeps the roll-up the export reads)."""
    start = timezone.now() - timedelta(days=2)
    ingest_usage(
        records=[
            UsageInput(
                i, f"r-{line.pk}-{i}", line.iccid, size, start + timedelta(minutes=i), start + timedelta(minutes=i + 1)
            )
            for i in range(n)
        ]
    )


@pytest.fixture
def two_customers(customer, other_customer, package):
    mine = make_line(owner=customer, package=package, label="Alice's line")
    theirs = make_line(owner=other_customer, package=package, label="Mallory's line")
    _usage(mine, 3, 1000)
    _usage(theirs, 2, 777_777)
    rule = make_rule(line=mine, package=package)
    make_renewal(line=mine, package=package, rule=rule)
    make_charge(user=customer, line=mine, package=package, status=Charge.Status.SUCCEEDED, refunded_minor=500)
    make_charge(user=other_customer, line=theirs, package=package, amount_minor=424242)
    Notice.objects.create(user=customer, line=mine, kind="usage", facts={"percent": 80}, dedup_key="mine-1")
    Notice.objects.create(user=other_customer, line=theirs, kind="usage", facts={"percent": 90}, dedup_key="theirs")
    return mine, theirs


def test_the_download_holds_the_customers_own_data_and_nothing_of_another_customers(
    customer_client, customer, other_customer, two_customers, package
):
    mine, theirs = two_customers
    data = _download(customer_client, reverse("accounts:download_data"))

    assert data["format"] == "esimsite-data-export/1"
    assert data["profile"]["email"] == customer.email
    assert data["profile"]["email_addresses"] == [{"email": customer.email, "verified": True, "primary": True}]
    assert [line["iccid"] for line in data["lines"]] == [mine.iccid]
    assert data["lines"][0]["package"]["name"] == package.name
    assert sum(day["bytes"] for day in data["usage_daily"]) == 3000
    assert [r["record_id"] for r in data["usage_records"]] == [f"r-{mine.pk}-{i}" for i in range(3)]
    assert [rule["line_id"] for rule in data["renewal_rules"]] == [mine.pk]
    assert [renewal["line_id"] for renewal in data["renewals"]] == [mine.pk]
    [charge] = data["charges"]
    assert (charge["amount_minor"], charge["currency"], charge["refunded_minor"]) == (
        package.price_minor,
        package.currency,
        500,
    )
    assert charge["created_at"].endswith("+00:00")  # UTC, ISO 8601
    assert [n["facts"] for n in data["notices"]] == [{"percent": 80}]
    text = json.dumps(data)
    for foreign in (other_customer.email, theirs.iccid, "Mallory's line", "424242", "777777", "theirs"):
        assert foreign not in text


def test_anonymous_visitors_are_sent_to_login(client):
    for name in ("accounts:download_data", "accounts:close_account"):
        for method in (client.get, client.post):
            response = method(reverse(name))
            assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


def test_closing_from_the_settings_asks_to_sign_in_again_then_closes(client, customer, package):
    line = make_line(owner=customer, package=package)
    client.force_login(customer)  # a session, but no recent sign-in
    settings_page = client.get(reverse("accounts:settings")).content.decode()
    assert reverse("accounts:download_data") in settings_page and reverse("accounts:close_account") in settings_page
    assert client.get(reverse("accounts:close_account")).status_code == 200
    again = client.post(reverse("accounts:close_account"), {"confirm": "on"})
    assert again.status_code == 302 and again["Location"].startswith(reverse("account_reauthenticate"))
    assert User.objects.get(pk=customer.pk).is_active

    assert client.post(reverse("account_reauthenticate"), {"password": PASSWORD}).status_code == 302
    unticked = client.post(reverse("accounts:close_account"), {})
    assert unticked.status_code == 200 and unticked.context["form"].errors["confirm"]
    closed = client.post(reverse("accounts:close_account"), {"confirm": "on"})

    assert closed.status_code == 200
    assert "Your account is closed" in closed.content.decode()
    assert not User.objects.get(pk=customer.pk).is_active
    assert Line.objects.get(pk=line.pk).status == Line.Status.TERMINATED
    assert client.get(reverse("accounts:settings")).status_code == 302  # signed out
    record = ChangeRecord.objects.get(action="account_closed", object_id=str(customer.pk))
    assert record.after == {"closed_by": "customer"}


def test_operator_downloads_a_customers_data_and_the_download_is_history(db, customer, other_customer):
    client, operator = admin_client_for("finance")
    url = reverse("admin:accounts_user_data_export", args=[customer.pk])
    assert (
        reverse("admin:accounts_user_data_export", args=[customer.pk])
        in client.get(reverse("admin:accounts_user_change", args=[customer.pk])).content.decode()
    )
    assert client.get(url).status_code == 405  # it writes history: a POST, as no GET changes state
    assert not ChangeRecord.objects.filter(action="data_exported").exists()
    data = _download(client, url, method="post")
    assert data["profile"]["email"] == customer.email and other_customer.email not in json.dumps(data)
    record = ChangeRecord.objects.get(action="data_exported", object_id=str(customer.pk))
    assert record.actor_id == operator.pk
    assert client.post(reverse("admin:accounts_user_data_export", args=[999999])).status_code == 404


def test_staff_without_the_data_rights_permissions_can_neither_download_nor_close(db, customer):
    client, _support = admin_client_for("support")
    assert client.post(reverse("admin:accounts_user_data_export", args=[customer.pk])).status_code == 403
    changelist = reverse("admin:accounts_user_changelist")
    response = client.post(
        changelist, {"action": "close_accounts", "_selected_action": [str(customer.pk)], "post": "yes", "reason": "x"}
    )
    assert response.status_code in (200, 302)
    assert User.objects.get(pk=customer.pk).is_active
    assert "close_accounts" not in client.get(changelist).content.decode()
    anonymous = client.__class__()
    url = reverse("admin:accounts_user_data_export", args=[customer.pk])
    assert anonymous.post(url).status_code == 302


def test_operator_closes_an_account_on_request_with_history(db, customer, other_customer, package):
    make_line(owner=customer, package=package)
    client, operator = admin_client_for("finance")
    changelist = reverse("admin:accounts_user_changelist")
    first, confirmed = run_action(client, changelist, "close_accounts", [customer.pk], reason="Customer's email #812")
    assert "cannot be undone" in first.content.decode()
    assert confirmed.status_code == 302
    closed = User.objects.get(pk=customer.pk)
    assert not closed.is_active and closed.email.startswith("closed-")
    record = ChangeRecord.objects.get(action="account_closed", object_id=str(customer.pk))
    assert record.actor_id == operator.pk and record.after == {"closed_by": "operator"}
    assert record.reason == "Customer's email #812"
    assert User.objects.get(pk=other_customer.pk).is_active
    # The kept record shows on the customer's page, under the pseudonym.
    page = client.get(reverse("admin:accounts_user_change", args=[customer.pk])).content.decode()
    assert "account_closed" in page and "alice@example.com" not in page


def test_closing_with_a_payment_in_flight_says_so_and_keeps_the_account(client, customer, package):
    line = make_line(owner=customer, package=package)
    make_charge(user=customer, line=line, package=package, status=Charge.Status.PENDING)  # sent, no answer yet
    client.force_login(customer)
    assert client.post(reverse("account_reauthenticate"), {"password": PASSWORD}).status_code == 302

    response = client.post(reverse("accounts:close_account"), {"confirm": "on"})

    assert response.status_code == 200
    assert "A payment of yours is being processed right now" in response.content.decode()
    assert User.objects.get(pk=customer.pk).is_active
    assert Line.objects.get(pk=line.pk).status == line.status
    assert not ChangeRecord.objects.filter(action="account_closed").exists()
