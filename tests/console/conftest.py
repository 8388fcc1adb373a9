"""Operators for the admin tests: staff users in the support / finance groups (made by the
post_migrate hook) or superusers, logged in through allauth with a real TOTP code."""

import itertools

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from console.roles import FINANCE, SUPPORT
from tests.accounts.helpers import PASSWORD, totp_code
from tests.builders import make_user

_seq = itertools.count(1)


def make_operator(role: str):
    """role: 'support', 'finance' or 'superuser'."""
    user = make_user(
        email=f"{role}{next(_seq)}@ops.example.com", password=PASSWORD, is_staff=True, is_superuser=role == "superuser"
    )
    if role in (SUPPORT, FINANCE):
        user.groups.add(Group.objects.get(name=role))
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return user, secret


def admin_client_for(role: str) -> tuple[Client, object]:
    user, secret = make_operator(role)
    client = Client()
    response = client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    assert response["Location"].startswith(reverse("mfa_authenticate"))
    response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    return client, user


@pytest.fixture
def support_client(db):
    return admin_client_for(SUPPORT)


@pytest.fixture
def finance_client(db):
    return admin_client_for(FINANCE)


@pytest.fixture
def superuser_client(db):
    return admin_client_for("superuser")


def run_action(client, changelist: str, action: str, pks, **extra):
    """Choose the action (the confirmation page), then confirm it with `extra` (e.g. reason)."""
    data = {"action": action, "_selected_action": [str(pk) for pk in pks], "index": 0}
    first = client.post(changelist, data)
    assert first.status_code == 200, first
    confirmed = client.post(changelist, {**data, "post": "yes", **extra})
    return first, confirmed


def management_forms(page) -> dict:
    """The inline formsets' management fields of a change page, as the browser would post them."""
    import re

    html = page.content.decode()
    return {
        name: value
        for name, value in re.findall(r'name="([^"]+-(?:TOTAL|INITIAL|MIN_NUM|MAX_NUM)_FORMS)"[^>]*value="(\d*)"', html)
    }


def form_values(page) -> dict:
    """What the browser would post from the change page's form as it was shown: every input,
    select and textarea with its current value (checkboxes only when checked)."""
    from html.parser import HTMLParser

    class Form(HTMLParser):
        def __init__(self):
            super().__init__()
            self.values: dict = {}
            self.select = self.textarea = None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            name = attrs.get("name")
            if tag == "input" and name and attrs.get("type") not in ("submit", "button", "file"):
                if attrs.get("type") in ("checkbox", "radio") and "checked" not in attrs:
                    return
                self.values[name] = attrs.get("value") or ("on" if attrs.get("type") == "checkbox" else "")
            elif tag == "select" and name:
                self.select = name
                self.values.setdefault(name, "")
            elif tag == "option" and self.select and "selected" in attrs:
                self.values[self.select] = attrs.get("value", "")
            elif tag == "textarea" and name:
                self.textarea = name
                self.values[name] = ""

        def handle_endtag(self, tag):
            if tag == "select":
                self.select = None
            elif tag == "textarea":
                self.textarea = None

        def handle_data(self, data):
            if self.textarea:
                self.values[self.textarea] += data.lstrip("\n")

    parser = Form()
    parser.feed(page.content.decode())
    return parser.values
