"""Sign-up by email: verification link, login, account page, in English and in Chinese."""

from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tests.accounts.helpers import PASSWORD, confirmation_path, sign_up


def test_sign_up_verify_by_link_then_land_on_account_page(client, db):
    response = sign_up(client, email="Ann@Example.com")
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    user = User.objects.get()
    assert user.email == "ann@example.com" and user.phone is None
    assert not EmailAddress.objects.get(user=user).verified
    assert client.get(reverse("accounts:home")).status_code == 302  # not logged in before verifying

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ann@example.com"]
    assert message.subject.startswith("[Axis eSIM] ")
    assert "Hello from Axis eSIM!" in message.body
    path = confirmation_path(message)

    page = client.get(path)
    assert page.status_code == 200  # a Confirm button, so a mail scanner's GET confirms nothing
    assert not EmailAddress.objects.get(user=user).verified
    response = client.post(path)
    assert response.status_code == 302 and response["Location"] == reverse("accounts:home")
    assert EmailAddress.objects.get(user=user).verified

    home = client.get(reverse("accounts:home"))
    assert home.status_code == 200
    assert "My lines" in home.content.decode()


def test_sign_up_in_chinese_sends_chinese_email_and_shows_chinese_account_page(client, db):
    response = sign_up(client, email="li@example.com", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    assert response["Location"] == reverse("account_email_verification_sent")
    user = User.objects.get()
    assert user.language == "zh-hans"  # remembered for emails sent later without a request

    message = mail.outbox[0]
    assert "来自 Axis eSIM 的问候！" in message.body
    assert "确认" in message.subject or "验证" in message.subject
    path = confirmation_path(message)
    assert "确认" in client.get(path, HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()

    response = client.post(path, HTTP_ACCEPT_LANGUAGE="zh-CN", follow=True)
    assert response.redirect_chain[-1][0] == reverse("accounts:home")
    body = response.content.decode()
    assert '<html lang="zh-hans">' in body
    assert "我的 eSIM" in body
    assert "您还没有 eSIM" in body


def test_unverified_email_blocks_login_and_resends_the_link(client, db):
    sign_up(client, email="eve@example.com")
    fresh = Client()
    response = fresh.post(reverse("account_login"), {"login": "eve@example.com", "password": PASSWORD})
    assert response["Location"] == reverse("account_email_verification_sent")
    # allauth allows one verification email per address per 3 minutes; the sign-up mail used it.
    assert len(mail.outbox) == 1
    assert fresh.get(reverse("accounts:home")).status_code == 302


def test_link_opened_in_another_browser_confirms_then_asks_to_log_in(client, db):
    sign_up(client, email="eve@example.com")
    other = Client()
    response = other.post(confirmation_path(mail.outbox[0]))
    assert response.status_code == 302 and response["Location"] == reverse("account_login")
    response = other.post(reverse("account_login"), {"login": "eve@example.com", "password": PASSWORD})
    assert response["Location"] == reverse("accounts:home")
    assert other.get(reverse("accounts:home")).status_code == 200


def test_two_sign_ups_without_phone_do_not_collide(client, db):
    sign_up(client, email="one@example.com")
    sign_up(Client(), email="two@example.com")
    assert list(User.objects.order_by("email").values_list("phone", flat=True)) == [None, None]


def test_logout_is_a_post_and_ends_the_session(customer_client):
    assert customer_client.get(reverse("accounts:home")).status_code == 200
    response = customer_client.post(reverse("account_logout"))
    assert response.status_code == 302
    assert customer_client.get(reverse("accounts:home")).status_code == 302


def test_password_reset_by_email_link(client, customer):
    response = client.post(reverse("account_reset_password"), {"email": customer.email})
    assert response.status_code == 302
    link = confirmation_path(mail.outbox[-1])
    response = client.get(link, follow=True)
    form_url = response.redirect_chain[-1][0]
    response = client.post(form_url, {"password1": "n3w-Secret-pass", "password2": "n3w-Secret-pass"})
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.check_password("n3w-Secret-pass")


def test_password_change(customer_client, customer):
    response = customer_client.post(
        reverse("account_change_password"),
        {"oldpassword": "correct horse battery", "password1": "n3w-Secret-pass", "password2": "n3w-Secret-pass"},
    )
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.check_password("n3w-Secret-pass")
