"""Who may open what: every portal URL for an anonymous visitor, the owner, another customer and a
staff user who has not passed two-factor; every admin URL refused to anyone without the TOTP step."""

import pytest
from django.contrib import admin
from django.urls import reverse

from accounts import sms
from payments import gateways
from payments.models import Charge
from renewals.models import RenewalRule
from tests.accounts.helpers import PASSWORD, sms_code
from tests.builders import make_line, make_user
from tests.console.conftest import admin_client_for
from tests.payments.conftest import create_card

from .conftest import (
    ALLAUTH_OWN_ACCOUNT,
    ALLAUTH_PUBLIC,
    MATRIX,
    MATRIX_BY_NAME,
    OUT_OF_SCOPE,
    assert_unchanged,
    client_for,
    fill_route,
    full_url,
    is_admin,
    is_login_redirect,
    snapshot,
    walk,
)

# The owner's POST that leaves the database as it was: completing a 3-D Secure payment the bank
# has not answered yet records nothing new.
# Closing an account with a session older than allauth's reauthentication window is sent to sign
# in again first (tests/renewals/test_data_rights_pages.py closes one for real).
OWNER_POST_CHANGES_NOTHING = {"payments:complete", "payments:method_setup", "accounts:close_account"}


@pytest.mark.pure
def test_every_url_is_in_the_matrix_or_out_of_scope_with_a_reason():
    portal = [e for e in walk() if not is_admin(e)]
    known = set(MATRIX_BY_NAME) | set(OUT_OF_SCOPE) | ALLAUTH_PUBLIC | ALLAUTH_OWN_ACCOUNT
    missing = sorted(e.key for e in portal if e.key not in known)
    assert not missing, f"URLs with no entry in tests/security/conftest.py's matrix: {missing}"
    stale = sorted(known - {e.key for e in portal})
    assert not stale, f"matrix entries for URLs that no longer exist: {stale}"
    assert all(OUT_OF_SCOPE.values())


@pytest.mark.parametrize("row", MATRIX, ids=lambda row: row.name)
def test_anonymous_visitor_is_sent_to_login_and_changes_nothing(world, row):
    client = client_for(None)
    before = snapshot()
    for method in ("get", "post"):
        response = getattr(client, method)(full_url(row, world), row.data(world) if method == "post" else None)
        if row.json and response.status_code in (401, 403):
            assert response["Content-Type"].startswith("application/json")
            continue
        assert is_login_redirect(response), (method, response.status_code, response.get("Location"))
    assert_unchanged(before, f"anonymous requests to {row.name}")


@pytest.mark.parametrize("row", MATRIX, ids=lambda row: row.name)
def test_owner_reaches_own_objects(world, row):
    client = client_for(world.owner)
    response = client.get(full_url(row, world))
    assert response.status_code == (row.get or 405), response.content[:500]
    if row.get == 200 and not row.json and row.objects:
        assert any(marker in response.content.decode() for marker in world.markers), (
            "the owner's page shows nothing of theirs"
        )
    if row.post is None:
        before = snapshot()
        assert client.post(full_url(row, world), row.data(world)).status_code == 405
        assert_unchanged(before, f"the owner's refused POST to {row.name}")
        return
    before = snapshot()
    response = client.post(full_url(row, world), row.data(world))
    assert response.status_code == row.post, response.content[:1000]
    if row.post == 302:
        assert not is_login_redirect(response)
    if row.name not in OWNER_POST_CHANGES_NOTHING:
        # The control for the other roles' "nothing changed": this POST does change something.
        assert snapshot() != before, f"the owner's POST to {row.name} changed nothing"


@pytest.mark.parametrize("who", ["other", "staff"])
@pytest.mark.parametrize("row", MATRIX, ids=lambda row: row.name)
def test_another_customer_and_staff_without_two_factor_get_404_and_change_nothing(world, row, who):
    """Staff without the TOTP step are ordinary customers on the portal: nothing of the owner's."""
    user = getattr(world, who)
    client = client_for(user)
    before = snapshot()
    url = full_url(row, world)
    responses = []
    if row.get is not None:
        response = client.get(url)
        responses.append(response)
        assert response.status_code == (row.foreign if row.objects else 200), (
            response.status_code,
            response.content[:300],
        )
    if row.post is not None and row.objects:
        response = client.post(url, row.data(world))
        responses.append(response)
        assert response.status_code == row.foreign, (response.status_code, response.content[:300])
    for response in responses:
        content = b"".join(response.streaming_content) if response.streaming else response.content
        body = content.decode(errors="replace")
        leaked = [marker for marker in world.markers if marker in body]
        assert not leaked, f"{row.name} shows {user} the owner's {leaked}"
    assert_unchanged(before, f"{who}'s requests to {row.name}")


def test_customers_own_choices_never_include_another_customers_objects(world):
    """The owner's forms name objects by id in the body: another customer's line or card is refused."""
    other_line = make_line(owner=world.other, package=world.package, label="Other's line")
    other_customer = gateways.ensure_customer(world.other)
    other_card = gateways.attach_payment_method(customer_id=other_customer.id, payment_method_id=create_card())
    client = client_for(world.owner)
    before = snapshot()
    buy = client.post(
        reverse("payments:buy", args=[world.line.pk]), {"package": world.package.pk, "payment_method": other_card.id}
    )
    assert buy.status_code == 400
    esim = client.post(reverse("provisioning:buy", args=[world.package.pk]), {"payment_method": other_card.id})
    assert esim.status_code == 400
    pay = client.post(reverse("payments:pay_renewal", args=[world.renewal.pk]), {"payment_method": other_card.id})
    assert pay.status_code == 400
    rule = client.post(
        reverse("renewals:rule", args=[world.line.pk]),
        MATRIX_BY_NAME["renewals:rule"].data(world) | {"payment_method_id": other_card.id},
    )
    assert rule.status_code == 200 and rule.context["form"].errors.get("payment_method_id")
    assert client.post(reverse("payments:method_default", args=[other_card.id])).status_code == 404
    assert client.post(reverse("payments:method_remove", args=[other_card.id]), {"replacement": ""}).status_code == 404
    assert (
        client.post(
            reverse("payments:method_remove", args=[world.method_id]), {"replacement": other_card.id}
        ).status_code
        == 400
    )
    assert_unchanged(before, "the owner naming another customer's objects")
    history = client.get(reverse("payments:history"), {"line": other_line.pk})
    assert history.status_code == 200 and "Other&#x27;s line" not in history.content.decode()
    csv = client.get(reverse("payments:history_csv"), {"line": other_line.pk})
    assert other_line.iccid not in csv.content.decode()


@pytest.mark.parametrize("name", sorted(ALLAUTH_OWN_ACCOUNT))
def test_allauth_account_pages_send_an_anonymous_visitor_to_login(db, name):
    client = client_for(None)
    for method in ("get", "post"):
        response = getattr(client, method)(reverse(name))
        assert is_login_redirect(response), (method, response.status_code, response.get("Location"))


# --- unverified contact details -------------------------------------------------------------------


def _portal_gets(world):
    return [full_url(row, world) for row in MATRIX if row.get is not None]


def test_customer_with_unverified_email_gets_no_portal_session(world, client):
    user = make_user(email="unverified@example.com", password=PASSWORD, verified=False)
    make_line(owner=user)
    response = client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    assert response["Location"] == reverse("account_email_verification_sent")
    for url in _portal_gets(world):
        assert is_login_redirect(client.get(url)), url


def test_login_by_unverified_phone_opens_the_portal_only_after_the_sms_code(world, client):
    user = make_user(email="phone@example.com", password=PASSWORD, phone="+8613800138009", phone_verified=False)
    line = make_line(owner=user)
    response = client.post(reverse("account_login"), {"login": user.phone, "password": PASSWORD})
    assert response["Location"] == reverse("account_verify_phone")
    for url in _portal_gets(world) + [reverse("accounts:line_detail", args=[line.pk])]:
        assert is_login_redirect(client.get(url)), url
    client.post(reverse("account_verify_phone"), {"code": sms_code(sms.outbox[-1])})
    assert client.get(reverse("accounts:line_detail", args=[line.pk])).status_code == 200
    assert client.get(reverse("accounts:line_detail", args=[world.line.pk])).status_code == 404


# --- the admin ------------------------------------------------------------------------------------


def _action_posts():
    """Each registered model's admin actions, chosen (the confirmation page) and confirmed."""
    for model, model_admin in admin.site._registry.items():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        pks = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)[:5]] or ["1"]
        names = ["delete_selected", *(getattr(a, "__name__", a) for a in model_admin.actions or [])]
        for name in names:
            data = {"action": name, "_selected_action": pks, "index": 0, "reason": "security test"}
            yield url, data
            yield url, {**data, "post": "yes"}


def _admin_refusal(endpoint_key: str, response) -> bool:
    if endpoint_key == "admin:login":
        # The admin's login sends staff to set up or pass TOTP, a customer to a 403.
        return response.status_code == 403 or (
            response.status_code == 302
            and response["Location"].startswith((reverse("mfa_activate_totp"), reverse("mfa_reauthenticate")))
        )
    if endpoint_key == "admin:logout":
        return response.status_code == 302 and response["Location"] == reverse("admin:index")
    return is_login_redirect(response, reverse("admin:login"))


@pytest.mark.parametrize("who", ["staff", "owner", "staff_with_totp"])
def test_admin_refuses_everyone_who_has_not_passed_two_factor(world, who):
    """Every admin URL (model pages, the operations page, imports, dj-stripe's pages), every
    action's confirmation page and CSV export, GET and POST: a redirect to the login, nothing done."""
    if who == "staff_with_totp":
        from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

        user = make_user(email="totp-staff@example.com", password=PASSWORD, is_staff=True, is_superuser=True)
        TOTP.activate(user, generate_totp_secret())
        client = client_for(None)
        # Password only: the session never passed the code step (a password reset, an old session).
        client.force_login(user)
    else:
        client = client_for(getattr(world, who))
    before = snapshot()
    refused_wrongly = []
    admin_endpoints = [e for e in walk() if is_admin(e)]
    assert len(admin_endpoints) > 50 and any(e.key == "admin:operations" for e in admin_endpoints)
    for endpoint in admin_endpoints:
        url = fill_route(endpoint.route)
        for method in ("get", "post"):
            data = {"post": "yes", "reason": "security test"} if method == "post" else None
            response = getattr(client, method)(url, data)
            if not _admin_refusal(endpoint.key, response):
                refused_wrongly.append((method.upper(), url, response.status_code, response.get("Location")))
    for url, data in _action_posts():
        response = client.post(url, data)
        if not is_login_redirect(response, reverse("admin:login")):
            refused_wrongly.append(("POST action", url, data["action"], response.status_code))
    assert not refused_wrongly, refused_wrongly
    assert_unchanged(before, f"{who}'s admin requests")
    assert RenewalRule.objects.filter(pk=world.rule.pk, enabled=True).exists()
    assert Charge.objects.filter(pk=world.receipt_charge.pk, status=Charge.Status.SUCCEEDED).exists()


def test_operator_who_passed_two_factor_opens_the_same_admin_pages(world):
    """The control for the refusals above: the URLs are real pages once the TOTP step is passed."""
    client, _operator = admin_client_for("superuser")
    for url in (
        reverse("admin:index"),
        reverse("admin:operations"),
        reverse("admin:accounts_line_import"),
        reverse("admin:accounts_line_assign"),
        reverse("admin:accounts_line_change", args=[world.line.pk]),
        reverse("admin:payments_charge_change", args=[world.receipt_charge.pk]),
    ):
        assert client.get(url).status_code == 200, url
    export = client.post(
        reverse("admin:accounts_line_changelist"),
        {"action": "export_lines_csv", "_selected_action": [world.line.pk], "index": 0},
    )
    assert export.status_code == 200 and world.line.iccid in export.content.decode()
    confirm = client.post(
        reverse("admin:accounts_line_changelist"),
        {"action": "suspend_lines", "_selected_action": [world.line.pk], "index": 0},
    )
    assert confirm.status_code == 200
