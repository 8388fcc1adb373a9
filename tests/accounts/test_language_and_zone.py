"""Language switcher, the choice remembered on the user, time zone display and settings page."""

import zoneinfo
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.urls import reverse

from tests.accounts.helpers import PASSWORD
from tests.builders import make_line, make_user


def test_switcher_sets_the_cookie_and_remembers_the_choice_on_the_user(customer_client, customer):
    response = customer_client.post(reverse("accounts:set_language"), {"language": "zh-hans", "next": "/"})
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    customer.refresh_from_db()
    assert customer.language == "zh-hans"
    page = customer_client.get(reverse("accounts:home")).content.decode()
    assert '<html lang="zh-hans">' in page and "我的 eSIM" in page


def test_anonymous_switcher_only_sets_the_cookie(client, db):
    response = client.post(reverse("accounts:set_language"), {"language": "zh-hans", "next": "/accounts/login/"})
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    assert "登录" in client.get(reverse("account_login")).content.decode()


def test_unknown_language_is_ignored(customer_client, customer):
    customer_client.post(reverse("accounts:set_language"), {"language": "xx", "next": "/"})
    customer.refresh_from_db()
    assert customer.language == ""


def test_saved_language_is_applied_at_login_from_a_fresh_browser(client, db):
    make_user(email="c@example.com", password=PASSWORD, language="zh-hans")
    response = client.post(
        reverse("account_login"),
        {"login": "c@example.com", "password": PASSWORD},
        HTTP_ACCEPT_LANGUAGE="en",
        follow=True,
    )
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    assert '<html lang="zh-hans">' in response.content.decode()
    # and it holds after logout, on the same browser
    client.post(reverse("account_logout"))
    assert '<html lang="zh-hans">' in client.get(reverse("account_login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_validity_end_is_shown_in_the_users_time_zone(client, db):
    user = make_user(time_zone="Asia/Shanghai")
    make_line(owner=user, expires_at=datetime(2030, 1, 31, 20, 30, tzinfo=UTC))
    client.force_login(user)
    page = client.get(reverse("accounts:home")).content.decode()
    # 20:30 UTC on 31 January is 04:30 on 1 February in Shanghai
    assert "Feb 1, 2030, 04:30" in page
    assert "Asia/Shanghai" in page


def test_settings_page_changes_time_zone_and_language(customer_client, customer):
    page = customer_client.get(reverse("accounts:settings"))
    assert page.status_code == 200
    response = customer_client.post(
        reverse("accounts:settings"),
        {"name": "Alice", "language": "zh-hans", "time_zone": "Europe/Berlin"},
        follow=True,
    )
    customer.refresh_from_db()
    assert (customer.name, customer.language, customer.time_zone) == ("Alice", "zh-hans", "Europe/Berlin")
    body = response.content.decode()
    assert '<html lang="zh-hans">' in body and "已保存" in body
    assert customer_client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"


def test_settings_page_refuses_an_unknown_time_zone(customer_client, customer):
    response = customer_client.post(
        reverse("accounts:settings"), {"name": "", "language": "en", "time_zone": "Mars/Olympus"}
    )
    assert response.status_code == 200
    assert 'aria-invalid="true"' in response.content.decode()
    customer.refresh_from_db()
    assert customer.time_zone == "UTC"


def test_settings_page_needs_login(client, db):
    response = client.get(reverse("accounts:settings"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


@pytest.mark.pure
def test_every_zone_offered_is_valid():
    from accounts.forms import time_zone_choices

    for zone, _label in time_zone_choices():
        zoneinfo.ZoneInfo(zone)
