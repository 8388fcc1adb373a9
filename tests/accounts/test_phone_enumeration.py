"""Sign-up must not tell whether a phone number is registered. allauth drops a sign-up whose
number is taken (and texts the owner), but its verification page then lacked the "Use a different
phone number" form, which the page for a new number has: a stranger could probe numbers. Both pages,
and what changing the number answers, are the same."""

import re

from django.test import Client
from django.urls import reverse

from accounts import sms
from accounts.models import User
from tests.accounts.helpers import PASSWORD, sign_up
from tests.builders import make_user

REGISTERED = "+8613800138001"


def normalised(html: str, *numbers: str) -> str:
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', 'name="csrfmiddlewaretoken" value=""', html)
    for number in numbers:
        html = html.replace(number, "<number>")
    return html


def verification_page(email: str, phone: str, address: str = "198.51.100.1") -> tuple[Client, str]:
    client = Client(REMOTE_ADDR=address)  # one visitor each: allauth limits SMS per address too
    response = sign_up(client, email=email, phone=phone)
    assert response.status_code == 302 and response["Location"] == reverse("account_verify_phone")
    page = client.get(reverse("account_verify_phone"))
    assert page.status_code == 200
    return client, page.content.decode()


def test_the_verification_page_is_the_same_for_a_new_and_an_already_registered_number(db):
    make_user(email="owner@example.com", password=PASSWORD, phone=REGISTERED, phone_verified=True)
    _new, new_page = verification_page("new1@example.com", "+8613800138002", "198.51.100.1")
    _taken, taken_page = verification_page("new2@example.com", REGISTERED, "198.51.100.2")
    assert "Use a different phone number" in new_page
    assert normalised(taken_page, REGISTERED) == normalised(new_page, "+8613800138002")


def test_changing_the_number_answers_the_same_whether_or_not_the_first_was_registered(db):
    make_user(email="owner@example.com", password=PASSWORD, phone=REGISTERED, phone_verified=True)
    other_owner = make_user(
        email="other-owner@example.com", password=PASSWORD, phone="+8613800138009", phone_verified=True
    )
    new_client, _page = verification_page("new1@example.com", "+8613800138002", "198.51.100.1")
    taken_client, _page = verification_page("new2@example.com", REGISTERED, "198.51.100.2")
    pages = []
    for client, to in ((new_client, "+8613800138003"), (taken_client, "+8613800138004")):
        response = client.post(reverse("account_verify_phone"), {"action": "change", "phone": to})
        assert response.status_code == 302 and response["Location"] == reverse("account_verify_phone")
        pages.append(normalised(client.get(reverse("account_verify_phone")).content.decode(), to))
    assert pages[0] == pages[1]
    # Changing again, to a registered number: its owner is told, as allauth does for a real sign-up.
    sms.outbox.clear()
    response = taken_client.post(reverse("account_verify_phone"), {"action": "change", "phone": other_owner.phone})
    assert response.status_code == 302
    assert [m["to"] for m in sms.outbox if "already has an account" in m["body"]] == [other_owner.phone]
    # No account was made for the dropped sign-up, and a wrong code still gets nowhere.
    assert not User.objects.filter(email="new2@example.com").exists()
    assert taken_client.post(reverse("account_verify_phone"), {"code": "000000"}).status_code in (200, 302)
