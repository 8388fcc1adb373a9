"""The verification email names the product from settings.SITE_NAME and comes from
settings.DEFAULT_FROM_EMAIL, whatever host the Sites row says (docs/sign-up.md)."""

from django.core import mail
from django.test import override_settings

from tests.accounts.helpers import sign_up


@override_settings(SITE_NAME="Nimbus eSIM", DEFAULT_FROM_EMAIL="Nimbus eSIM <hello@nimbus.example>")
def test_verification_email_names_the_site_and_comes_from_the_configured_sender(client, db):
    sign_up(client, email="ann@example.com")
    message = mail.outbox[0]
    assert message.from_email == "Nimbus eSIM <hello@nimbus.example>"
    assert message.subject == "[Nimbus eSIM] Please Confirm Your Email Address"
    assert message.body.startswith("Hello from Nimbus eSIM!")
    assert "to register an account on Nimbus eSIM." in message.body
    assert "testserver" not in message.body.split("http://testserver/")[0]
    assert message.body.rstrip().endswith("Thank you for using Nimbus eSIM.")


@override_settings(SITE_NAME="Nimbus eSIM")
def test_chinese_verification_email_names_the_site(client, db):
    sign_up(client, email="li@example.com", HTTP_ACCEPT_LANGUAGE="zh-CN")
    message = mail.outbox[0]
    assert message.subject.startswith("[Nimbus eSIM] ")
    assert message.body.startswith("来自 Nimbus eSIM 的问候！")
    assert "Nimbus eSIM" in message.body.split("\n\n")[1]
