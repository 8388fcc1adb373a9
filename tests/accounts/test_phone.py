"""Phone at sign-up: SMS code, three wrong codes, login by phone, rate limits answer 429."""

from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import sms
from accounts.models import User
from tests.accounts.helpers import PASSWORD, confirmation_path, sign_up, sms_code
from tests.builders import make_user


def test_phone_sign_up_sends_a_six_digit_code_and_verifies_the_phone(client, db):
    response = sign_up(client, email="ann@example.com", phone="+86 138 0013 8000")
    assert response.status_code == 302 and response["Location"] == reverse("account_verify_phone")
    user = User.objects.get()
    assert user.phone == "+8613800138000" and not user.phone_verified  # stored in E.164
    assert [m["to"] for m in sms.outbox] == ["+8613800138000"]
    code = sms_code(sms.outbox[0])
    assert len(code) == 6 and code.isdigit()

    response = client.post(reverse("account_verify_phone"), {"code": code})
    user.refresh_from_db()
    assert user.phone_verified
    # then the mandatory email verification
    assert response["Location"] == reverse("account_email_verification_sent")
    response = client.post(confirmation_path(mail.outbox[0]))
    assert response["Location"] == reverse("accounts:home")
    assert client.get(reverse("accounts:home")).status_code == 200


def test_phone_sign_up_in_chinese_gets_a_chinese_sms(client, db):
    sign_up(client, email="wang@example.com", phone="+8613800138000", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert "验证码" in sms.outbox[0]["body"]
    page = client.get(reverse("account_verify_phone"), HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "验证" in page


def test_three_wrong_codes_abort_the_pending_login(client, db):
    sign_up(client, email="bob@example.com", phone="+4917012345678")
    code = sms_code(sms.outbox[-1])
    wrong = "000000" if code != "000000" else "111111"
    for _attempt in (1, 2):
        response = client.post(reverse("account_verify_phone"), {"code": wrong})
        assert response.status_code == 200
        assert "Incorrect code." in response.content.decode()
    response = client.post(reverse("account_verify_phone"), {"code": wrong}, follow=True)
    assert response.redirect_chain[0] == (reverse("account_login"), 302)
    assert "Too many failed login attempts. Try again later." in response.content.decode()
    # The pending login is gone: even the right code is refused now.
    response = client.post(reverse("account_verify_phone"), {"code": code})
    assert response.status_code == 302 and response["Location"] == reverse("account_login")
    assert not User.objects.get().phone_verified
    assert client.get(reverse("accounts:home")).status_code == 302


def test_login_by_verified_phone(client, db):
    make_user(email="c@example.com", password=PASSWORD, phone="+8613800138001", phone_verified=True)
    response = client.post(reverse("account_login"), {"login": "+86 138 0013 8001", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("accounts:home")
    assert sms.outbox == []


def test_login_by_unverified_phone_asks_for_a_new_sms_code(client, db):
    make_user(email="c@example.com", password=PASSWORD, phone="+8613800138001", phone_verified=False)
    response = client.post(reverse("account_login"), {"login": "+8613800138001", "password": PASSWORD})
    assert response["Location"] == reverse("account_verify_phone")
    client.post(reverse("account_verify_phone"), {"code": sms_code(sms.outbox[-1])})
    assert User.objects.get().phone_verified


def test_wrong_password_by_phone_is_a_form_error(client, db):
    make_user(email="c@example.com", password=PASSWORD, phone="+8613800138001", phone_verified=True)
    response = client.post(reverse("account_login"), {"login": "+8613800138001", "password": "nope-nope-nope"})
    assert response.status_code == 200
    assert client.get(reverse("accounts:home")).status_code == 302


def test_taken_phone_creates_no_second_account_and_warns_the_owner(client, db):
    make_user(email="c@example.com", password=PASSWORD, phone="+8613800138001", phone_verified=True)
    sign_up(client, email="d@example.com", phone="+8613800138001")
    assert User.objects.count() == 1
    assert any("already has an account" in m["body"] for m in sms.outbox)


def test_sms_rate_limit_is_a_429_not_a_500(db):
    # allauth: one code per number per 30 s; a second sign-up stage for the same number trips it.
    make_user(email="c@example.com", password=PASSWORD, phone="+8613800138001", phone_verified=False)
    first = Client()
    first.post(reverse("account_login"), {"login": "+8613800138001", "password": PASSWORD})
    assert len(sms.outbox) == 1
    second = Client()
    response = second.post(reverse("account_login"), {"login": "+8613800138001", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many requests" in response.content.decode()
    assert 'id="site-header"' in response.content.decode()  # our layout, not a bare error


def test_failed_logins_lock_the_account_for_a_while(client, customer):
    for n in range(5):
        response = client.post(reverse("account_login"), {"login": customer.email, "password": f"wrong-{n}"})
        assert "Too many failed login attempts" not in response.content.decode()
    # allauth's login_failed limit: 5 per 5 minutes per account; then even the right password is refused.
    response = client.post(reverse("account_login"), {"login": customer.email, "password": "correct horse battery"})
    assert response.status_code == 200
    assert "Too many failed login attempts. Try again later." in response.content.decode()
    assert client.get(reverse("accounts:home")).status_code == 302


def test_signed_in_customer_adds_a_phone_from_settings(customer_client, customer):
    response = customer_client.post(reverse("account_change_phone"), {"phone": "+44 7400 123456"})
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.phone is None  # allauth keeps the new number pending until the code is entered
    assert sms.outbox[-1]["to"] == "+447400123456"
    response = customer_client.post(reverse("account_verify_phone"), {"code": sms_code(sms.outbox[-1])})
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.phone == "+447400123456" and customer.phone_verified
    page = customer_client.get(reverse("accounts:settings")).content.decode()
    assert "+447400123456" in page and "not verified" not in page
