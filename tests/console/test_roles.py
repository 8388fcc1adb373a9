"""Support reads everything and may retry, resume and cancel; only finance (and superusers) may
refund and edit packages and the retry policy. Checked through the admin as an operator uses it."""

from django.contrib.auth.models import Group

from accounts.models import ChangeRecord
from payments.models import Charge
from renewals.models import RetryPolicy
from tests.builders import make_charge, make_renewal
from tests.console.conftest import management_forms, run_action

CHARGES = "/admin/payments/charge/"


def test_groups_exist_after_migrate_with_their_rights(db):
    support = Group.objects.get(name="support")
    finance = Group.objects.get(name="finance")
    support_perms = {
        f"{p.content_type.app_label}.{p.codename}" for p in support.permissions.select_related("content_type")
    }
    finance_perms = {
        f"{p.content_type.app_label}.{p.codename}" for p in finance.permissions.select_related("content_type")
    }
    assert {
        "accounts.view_line",
        "payments.view_charge",
        "renewals.view_renewal",
        "renewals.view_retrypolicy",
        "accounts.retry_renewal",
        "accounts.resume_line",
        "accounts.cancel_renewal",
    } <= support_perms
    assert not {"accounts.refund_charge", "renewals.change_retrypolicy", "accounts.change_package"} & support_perms
    assert {"accounts.refund_charge", "renewals.change_retrypolicy", "accounts.change_package"} <= finance_perms
    # Data rights (docs/data-rights.md): finance answers them, support does not.
    data_rights = {"accounts.close_account", "accounts.export_customer_data"}
    assert data_rights <= finance_perms and not data_rights & support_perms


def test_support_is_not_offered_refund_and_cannot_post_it(support_client, customer, line, package):
    client, _user = support_client
    charge = make_charge(
        user=customer, line=line, package=package, status=Charge.Status.SUCCEEDED, payment_intent_id="pi_x"
    )
    page = client.get(CHARGES).content.decode()
    assert "refund_confirmed" not in page
    assert "export_charges_csv" in page
    response = client.post(
        CHARGES, {"action": "refund_confirmed", "_selected_action": [charge.pk], "index": 0, "post": "yes"}, follow=True
    )
    assert response.status_code == 200
    charge.refresh_from_db()
    assert (charge.status, charge.refunded_minor) == (Charge.Status.SUCCEEDED, 0)
    assert not ChangeRecord.objects.filter(action="refunded").exists()


def test_support_cannot_edit_the_retry_policy(support_client):
    client, _user = support_client
    policy = RetryPolicy.current()
    url = f"/admin/renewals/retrypolicy/{policy.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and 'name="grace_hours"' not in page.content.decode()  # read-only view
    response = client.post(
        url,
        {
            "retry_delays_minutes": "[5]",
            "hard_decline_codes": "[]",
            "grace_hours": 99,
            "minimum_renewal_minor": 0,
            "alert_after_failures": 3,
            "overage_price_per_gb_minor": 0,
        },
    )
    assert response.status_code == 403
    policy.refresh_from_db()
    assert policy.grace_hours == 0


def test_support_cannot_edit_packages(support_client, package):
    client, _user = support_client
    response = client.post(
        f"/admin/accounts/package/{package.pk}/change/",
        {
            "name": "cheap",
            "data_allowance_bytes": 1,
            "validity_days": 1,
            "price_minor": 1,
            "currency": "CNY",
            "active": "on",
        },
    )
    assert response.status_code == 403
    package.refresh_from_db()
    assert package.price_minor == 9800


def test_finance_edits_the_policy_and_the_history_says_who(finance_client):
    client, user = finance_client
    policy = RetryPolicy.current()
    url = f"/admin/renewals/retrypolicy/{policy.pk}/change/"
    response = client.post(
        url,
        {
            **management_forms(client.get(url)),
            "retry_delays_minutes": "[30, 120]",
            "hard_decline_codes": '["lost_card"]',
            "grace_hours": 12,
            "minimum_renewal_minor": 500,
            "alert_after_failures": 3,
            "overage_price_per_gb_minor": 0,
            "authentication_hours": 24,
        },
    )
    assert response.status_code == 302
    record = ChangeRecord.objects.get(action="changed", object_id=str(policy.pk), content_type__model="retrypolicy")
    assert record.actor == user
    assert record.before["grace_hours"] == 0 and record.after["grace_hours"] == 12
    assert record.after["retry_delays_minutes"] == [30, 120]
    page = client.get(f"/admin/renewals/retrypolicy/{policy.pk}/change/").content.decode()
    assert user.email in page  # the history is visible from the object


def test_support_may_retry_a_renewal(support_client, line, package):
    client, user = support_client
    renewal = make_renewal(line=line, package=package, status="retry_scheduled")
    _first, confirmed = run_action(client, "/admin/renewals/renewal/", "retry_now_confirmed", [renewal.pk])
    assert confirmed.status_code == 302
    renewal.refresh_from_db()
    assert renewal.status == "due"
    assert ChangeRecord.objects.get(action="retry_now").actor == user


def test_customers_and_anonymous_never_see_operator_pages(client, customer_client):
    for url in ("/admin/operations/", "/admin/accounts/line/import/", CHARGES):
        assert client.get(url)["Location"].startswith("/admin/login/")
        assert customer_client.get(url, follow=True).status_code == 403


def test_staff_without_a_role_sees_neither_operations_nor_import(db):
    from tests.console.conftest import admin_client_for

    client, _user = admin_client_for("staff")
    assert client.get("/admin/operations/").status_code == 403
    assert client.get("/admin/accounts/line/import/").status_code == 403
    assert client.get(CHARGES).status_code == 403
