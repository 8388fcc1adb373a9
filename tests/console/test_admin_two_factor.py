"""Staff enter the admin only after a TOTP step in this session; customers never."""

import time

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, TOTP, generate_totp_secret
from django.contrib import admin
from django.urls import reverse

from console.site import StaffAdminSite
from tests.accounts.helpers import PASSWORD, totp_code
from tests.builders import make_user


def make_staff(*, with_totp: bool):
    user = make_user(email="op@example.com", password=PASSWORD, is_staff=True, is_superuser=True)
    secret = None
    if with_totp:
        secret = generate_totp_secret()
        TOTP.activate(user, secret)
    return user, secret


@pytest.mark.pure
def test_admin_site_is_the_two_factor_site_for_every_app():
    assert isinstance(admin.site, StaffAdminSite)
    from accounts.models import Line

    assert admin.site.is_registered(Line)


def test_anonymous_is_sent_to_the_portal_login(client, db):
    response = client.get("/admin/", follow=True)
    assert [url for url, _status in response.redirect_chain] == [
        "/admin/login/?next=/admin/",
        "/accounts/login/?next=/admin/",
    ]


def test_staff_without_two_factor_cannot_open_the_admin_and_is_sent_to_set_it_up(client, db):
    user, _ = make_staff(with_totp=False)
    client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    response = client.get("/admin/", follow=True)
    # allauth asks for the password again before adding an authenticator
    assert [url for url, _status in response.redirect_chain] == [
        "/admin/login/?next=/admin/",
        reverse("mfa_activate_totp"),
        reverse("account_reauthenticate") + "?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F",
    ]
    assert "Staff accounts must set up two-factor authentication" in response.content.decode()
    assert client.get("/admin/accounts/line/").status_code == 302
    assert client.get("/admin/accounts/line/", follow=True).redirect_chain[-1][0] != "/admin/accounts/line/"


def test_staff_sets_up_totp_then_continues_from_the_recovery_codes_to_the_admin(client, db):
    """password -> set up the authenticator -> recovery codes -> "Continue to admin" -> admin,
    without a second code in the session that has just proved it holds the authenticator."""
    user, _ = make_staff(with_totp=False)
    response = client.post(reverse("account_login") + "?next=/admin/", {"login": user.email, "password": PASSWORD})
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("account_reauthenticate"))
    response = client.post(response.redirect_chain[-1][0], {"password": PASSWORD})
    assert response["Location"] == reverse("mfa_activate_totp")
    client.get(reverse("mfa_activate_totp"))
    secret = client.session[SECRET_SESSION_KEY]
    response = client.post(reverse("mfa_activate_totp"), {"code": totp_code(secret)})
    assert response["Location"] == reverse("mfa_view_recovery_codes")
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    codes = client.get(reverse("mfa_view_recovery_codes")).content.decode()
    assert 'href="/admin/"' in codes and "Continue to admin" in codes
    page = client.get("/admin/")
    assert page.status_code == 200 and "Axis eSIM operations" in page.content.decode()
    # The next session (a new login) asks for the code as always.
    client.logout()
    client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    assert client.get("/admin/").status_code == 302


def test_a_customer_setting_up_totp_sees_no_admin_button(client, db):
    client.force_login(make_user(email="alice@example.com", password=PASSWORD))
    response = client.get(reverse("mfa_activate_totp"))
    if response.status_code == 302:
        client.post(response["Location"], {"password": PASSWORD})
    client.get(reverse("mfa_activate_totp"))
    secret = client.session[SECRET_SESSION_KEY]
    client.post(reverse("mfa_activate_totp"), {"code": totp_code(secret)})
    codes = client.get(reverse("mfa_view_recovery_codes")).content.decode()
    assert "Continue to admin" not in codes


def test_staff_with_totp_logs_in_through_the_code_step(client, db):
    user, secret = make_staff(with_totp=True)
    response = client.post(reverse("account_login") + "?next=/admin/", {"login": user.email, "password": PASSWORD})
    assert response["Location"].startswith(reverse("mfa_authenticate"))
    assert client.get("/admin/").status_code == 302  # not in before the code
    response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    page = client.get("/admin/")
    assert page.status_code == 200
    assert "Axis eSIM operations" in page.content.decode()


def test_a_code_that_rolled_over_while_typed_is_accepted_but_one_two_steps_old_is_not(client, db):
    user, secret = make_staff(with_totp=True)
    now = time.time()
    with time_machine.travel(now, tick=False):
        client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
        response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret, now - 60)})
        assert response.status_code == 200 and client.get("/admin/").status_code == 302
        response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret, now - 30)})
        assert response.status_code == 302 and client.get("/admin/").status_code == 200


def test_wrong_totp_code_keeps_staff_out(client, db):
    user, secret = make_staff(with_totp=True)
    client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    wrong = "000000" if totp_code(secret) != "000000" else "111111"
    response = client.post(reverse("mfa_authenticate"), {"code": wrong})
    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302


def test_a_session_without_the_code_step_is_not_enough(client, db):
    user, _ = make_staff(with_totp=True)
    client.force_login(user)
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("mfa_reauthenticate"))


def test_customer_gets_403_from_the_admin(customer_client):
    assert customer_client.get("/admin/", follow=True).status_code == 403
