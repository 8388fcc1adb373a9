"""allauth's pages, the 429 page and our own pages share the one base layout."""

import pytest
from django.urls import reverse

from tests.accounts.helpers import sign_up

ANONYMOUS_PAGES = ["account_login", "account_signup", "account_reset_password", "accounts:plans"]
SIGNED_IN_PAGES = [
    "account_email",
    "account_change_password",
    "account_change_phone",
    "mfa_index",
    "accounts:settings",
    "accounts:home",
]


def assert_in_layout(body: str) -> None:
    assert 'id="site-header"' in body and 'id="language-select"' in body
    assert '<meta name="viewport"' in body
    assert "Menu:" not in body  # allauth's own bare layout is gone
    assert (
        "http://" not in body.split("<body", 1)[0] and "https://" not in body.split("<body", 1)[0]
    )  # no external assets


@pytest.mark.parametrize("name", ANONYMOUS_PAGES)
def test_anonymous_pages_use_the_layout(client, db, name):
    assert_in_layout(client.get(reverse(name)).content.decode())


@pytest.mark.parametrize("name", SIGNED_IN_PAGES)
def test_signed_in_pages_use_the_layout(customer_client, name):
    response = customer_client.get(reverse(name))
    assert response.status_code == 200
    assert_in_layout(response.content.decode())


def test_phone_code_page_ties_the_error_to_the_input(client, db):
    sign_up(client, email="ann@example.com", phone="+8613800138000")
    body = client.post(reverse("account_verify_phone"), {"code": "12"}).content.decode()
    assert_in_layout(body)
    assert 'aria-invalid="true"' in body
