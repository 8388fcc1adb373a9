"""Sign-up with an email or with a mobile number only; each one given is verified before the
first login. Numbers are read in the language's region (docs/sign-up.md)."""

from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import sms
from accounts.models import User
from tests.accounts.helpers import PASSWORD, confirmation_path, sms_code
from tests.builders import make_user


def sign_up_by_phone(client, phone: str, **headers):
    data = {"signup_with": "phone", "phone": phone, "password1": PASSWORD, "password2": PASSWORD}
    return client.post(reverse("account_signup"), data, **headers)


def test_sign_up_by_email_alone_verifies_the_email_then_logs_in(client, db):
    data = {"signup_with": "email", "email": "ann@example.com", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post(reverse("account_signup"), data)
    assert response["Location"] == reverse("account_email_verification_sent")
    assert sms.outbox == []
    assert client.get(reverse("accounts:home")).status_code == 302
    response = client.post(confirmation_path(mail.outbox[0]))
    assert response["Location"] == reverse("accounts:home")
    assert EmailAddress.objects.get(user__email="ann@example.com").verified


def test_sign_up_by_phone_only_texts_a_code_and_logs_in_once_verified(client, db):
    response = sign_up_by_phone(client, "+86 138 0013 8000")
    assert response["Location"] == reverse("account_verify_phone")
    user = User.objects.get()
    assert user.email is None and user.phone == "+8613800138000" and not user.phone_verified
    assert not EmailAddress.objects.exists() and mail.outbox == []
    assert client.get(reverse("accounts:home")).status_code == 302

    response = client.post(reverse("account_verify_phone"), {"code": sms_code(sms.outbox[-1])})
    assert response.status_code == 302 and response["Location"] == reverse("accounts:home")
    user.refresh_from_db()
    assert user.phone_verified
    assert client.get(reverse("accounts:home")).status_code == 200


def test_a_chinese_mobile_typed_the_local_way_is_accepted_on_the_chinese_page(client, db):
    response = sign_up_by_phone(client, "138 0013 8000", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert response["Location"] == reverse("account_verify_phone")
    assert User.objects.get().phone == "+8613800138000"
    assert sms.outbox[-1]["to"] == "+8613800138000"
    assert "验证码" in sms.outbox[-1]["body"]


def test_an_invalid_number_is_a_form_error_in_the_customers_language(client, db):
    response = sign_up_by_phone(client, "12345")
    assert response.status_code == 200
    assert (
        "This is not a valid mobile number. Type it as you would dial it at home, for example "
        "(201) 555-0123, or start with + and the country code (+1)."
    ) in response.content.decode()
    response = sign_up_by_phone(client, "12345", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert "手机号码无效。请按国内拨号方式输入，例如 131 2345 6789，或以 + 和国家代码开头（+86）。" in (
        response.content.decode()
    )
    assert not User.objects.exists() and sms.outbox == []


def test_phone_sign_up_needs_the_number(client, db):
    response = sign_up_by_phone(client, "")
    assert response.status_code == 200
    assert not User.objects.exists()


def test_login_by_a_local_number_on_the_chinese_page(client, db):
    make_user(email=None, password=PASSWORD, phone="+8613800138001", phone_verified=True)
    response = client.post(
        reverse("account_login"), {"login": "138 0013 8001", "password": PASSWORD}, HTTP_ACCEPT_LANGUAGE="zh-CN"
    )
    assert response.status_code == 302 and response["Location"] == reverse("accounts:home")


def test_a_phone_only_customer_logs_in_again_by_phone(client, db):
    sign_up_by_phone(client, "+8613800138000")
    client.post(reverse("account_verify_phone"), {"code": sms_code(sms.outbox[-1])})
    client.post(reverse("account_logout"))
    other = Client()
    response = other.post(reverse("account_login"), {"login": "+86 138 0013 8000", "password": PASSWORD})
    assert response["Location"] == reverse("accounts:home")


def test_a_taken_phone_makes_no_second_account_and_warns_its_owner(client, db):
    make_user(email=None, password=PASSWORD, phone="+8613800138001", phone_verified=True)
    response = sign_up_by_phone(client, "13800138001", HTTP_ACCEPT_LANGUAGE="zh-CN")
    # The same next page as for a free number, so a stranger learns nothing; no second account.
    assert response["Location"] == reverse("account_verify_phone")
    assert User.objects.count() == 1
    assert sms.outbox[-1]["to"] == "+8613800138001"
    assert "已有账户" in sms.outbox[-1]["body"]


def test_the_sign_up_page_offers_email_or_mobile_number(client, db):
    page = client.get(reverse("account_signup")).content.decode()
    assert 'name="email"' in page and f'href="{reverse("account_signup")}?with=phone"' in page
    page = client.get(reverse("account_signup") + "?with=phone").content.decode()
    assert 'name="email"' not in page and 'name="phone"' in page and 'value="phone"' in page
    assert '<strong aria-current="page">Mobile number</strong>' in page


def test_a_refused_phone_sign_up_stays_on_the_phone_form(client, db):
    page = sign_up_by_phone(client, "12345").content.decode()
    assert '<strong aria-current="page">Mobile number</strong>' in page and 'name="email"' not in page
