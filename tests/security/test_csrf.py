"""CSRF on every form: a POST without the token is refused everywhere (URLs walked from the
URLconf), every rendered POST form carries the token, and only the two signature-authenticated
machine endpoints are exempt."""

import pytest
from django.conf import settings
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from tests.accounts.helpers import PASSWORD
from tests.console.conftest import admin_client_for

from .conftest import (
    ALLAUTH_OWN_ACCOUNT,
    ALLAUTH_PUBLIC,
    MATRIX,
    MATRIX_BY_NAME,
    assert_unchanged,
    client_for,
    fill_route,
    full_url,
    is_admin,
    is_html,
    post_forms_without_token,
    snapshot,
    walk,
)

EXEMPT = {"partner_api:usage", "djstripe:djstripe_webhook_by_uuid", "provisioning:handle_download_progress_info"}


def _csrf_refused(response) -> bool:
    # Our CSRF failure page (templates/403_csrf.html), not some other 403.
    return response.status_code == 403 and "403_csrf.html" in [t.name for t in response.templates]


@pytest.mark.pure
def test_only_the_machine_to_machine_endpoints_are_csrf_exempt():
    assert "django.middleware.csrf.CsrfViewMiddleware" in settings.MIDDLEWARE
    exempt = {e.key for e in walk() if getattr(e.callback, "csrf_exempt", False)}
    assert exempt == EXEMPT


def test_every_post_without_a_token_is_refused_and_changes_nothing(world):
    """As the owner with the owner's valid form data (tests/security/test_access_matrix.py shows the
    same POSTs succeed when the token is not checked), and on every other URL of the project."""
    owner = client_for(world.owner, enforce_csrf_checks=True)
    anonymous = Client(enforce_csrf_checks=True)
    before = snapshot()
    accepted = []
    rows = {row.name: row for row in MATRIX}
    for endpoint in walk():
        if endpoint.key in EXEMPT or is_admin(endpoint):
            continue
        row = rows.get(endpoint.key)
        if row is not None:
            url, data, clients = full_url(row, world), row.data(world), (owner,)
        else:
            url, data = (
                fill_route(endpoint.route),
                {"password": PASSWORD, "login": world.owner.email, "language": "zh-hans", "email": world.owner.email},
            )
            clients = (owner, anonymous)
        for client in clients:
            response = client.post(url, data)
            if not _csrf_refused(response):
                accepted.append((url, response.status_code))
    assert not accepted, accepted
    assert_unchanged(before, "POSTs without a CSRF token")


def _operator_client(*, enforce_csrf_checks: bool) -> Client:
    """A superuser who passed the TOTP step (the admin's own test helper logs in through allauth)."""
    logged_in, _operator = admin_client_for("superuser")
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    client.cookies = logged_in.cookies
    return client


def test_admin_posts_without_a_token_are_refused_even_for_an_operator_who_passed_two_factor(world):
    client = _operator_client(enforce_csrf_checks=True)
    assert client.get(reverse("admin:index")).status_code == 200
    before = snapshot()
    accepted = []
    for endpoint in walk():
        if not is_admin(endpoint):
            continue
        url = fill_route(endpoint.route)
        response = client.post(url, {"post": "yes", "reason": "security test"})
        if not _csrf_refused(response):
            accepted.append((url, response.status_code))
    for model, model_admin in admin.site._registry.items():
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        pks = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)[:5]] or ["1"]
        for name in ["delete_selected", *(getattr(a, "__name__", a) for a in model_admin.actions or [])]:
            response = client.post(
                changelist,
                {"action": name, "_selected_action": pks, "index": 0, "post": "yes", "reason": "security test"},
            )
            if not _csrf_refused(response):
                accepted.append((changelist, name, response.status_code))
    assert not accepted, accepted
    assert_unchanged(before, "admin POSTs without a CSRF token")


# --- every rendered POST form carries the token -----------------------------------------------------


def _missing_tokens(response, where: str) -> list:
    if not is_html(response):
        return []
    return [(where, response.status_code, action) for action in post_forms_without_token(response.content.decode())]


def test_every_post_form_of_the_portal_and_allauth_carries_the_csrf_token(world):
    owner = client_for(world.owner)
    missing, pages = [], 0
    for row in MATRIX:
        if row.get is not None:
            response = owner.get(full_url(row, world))
            pages += is_html(response)
            missing += _missing_tokens(response, row.name)
    # Pages a POST renders: the rule's confirmation page and forms shown again with their errors.
    rendered_by_post = [
        (
            reverse("renewals:rule", args=[world.line.pk]),
            {**MATRIX_BY_NAME["renewals:rule"].data(world), "confirm": None},
        ),
        (reverse("renewals:rule", args=[world.line.pk]), {"package": "x"}),
        (reverse("payments:buy", args=[world.line.pk]), {"package": "x"}),
        (reverse("payments:pay_renewal", args=[world.renewal.pk]), {"payment_method": "pm_nope"}),
        (reverse("payments:method_remove", args=[world.spare_method_id]), {"replacement": "pm_nope"}),
        (reverse("payments:method_finish"), {"setup_intent_id": "bad"}),
        (reverse("accounts:settings"), {"language": "xx"}),
    ]
    for url, data in rendered_by_post:
        response = owner.post(url, {k: v for k, v in data.items() if v is not None})
        assert is_html(response), url
        pages += 1
        missing += _missing_tokens(response, "POST " + url)
    anonymous = Client()
    for name in sorted(
        ALLAUTH_PUBLIC
        - {
            "account_reset_password_from_key",
            "account_confirm_email",
            "account_logout",
            "account_confirm_login_code",
            "account_verify_phone",
            "mfa_authenticate",
        }
    ):
        response = anonymous.get(reverse(name))
        pages += is_html(response)
        missing += _missing_tokens(response, name)
    signed_in = client_for(world.owner)
    for name in sorted(ALLAUTH_OWN_ACCOUNT | {"account_logout"}):
        response = signed_in.get(reverse(name), follow=True)
        pages += is_html(response)
        missing += _missing_tokens(response, name)
    assert pages > 25
    assert not missing, missing


def test_every_post_form_of_the_admin_carries_the_csrf_token(world):
    client = _operator_client(enforce_csrf_checks=False)
    missing, pages = [], 0
    urls = [
        reverse("admin:index"),
        reverse("admin:operations"),
        reverse("admin:accounts_line_import"),
        reverse("admin:password_change"),
    ]
    for model in admin.site._registry:
        info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls.append(reverse(f"{info}_changelist"))
        if model._meta.app_label in ("accounts", "payments", "renewals"):
            urls.append(reverse(f"{info}_add"))
            obj = model._default_manager.first()
            if obj is not None:
                urls += [
                    reverse(f"{info}_change", args=[obj.pk]),
                    reverse(f"{info}_delete", args=[obj.pk]),
                    reverse(f"{info}_history", args=[obj.pk]),
                ]
    for url in urls:
        response = client.get(url)
        assert response.status_code in (200, 302, 403), (url, response.status_code)
        pages += is_html(response)
        missing += _missing_tokens(response, url)
    # The confirmation page of every action of our apps (chosen, not yet confirmed).
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in ("accounts", "payments", "renewals"):
            continue
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        pks = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)[:3]]
        if not pks:
            continue
        for name in ["delete_selected", *(getattr(a, "__name__", a) for a in model_admin.actions or [])]:
            response = client.post(changelist, {"action": name, "_selected_action": pks, "index": 0})
            pages += is_html(response)
            missing += _missing_tokens(response, f"{changelist} action {name}")
    assert pages > 40
    assert not missing, missing
