"""Steps a customer takes, shared by the accounts tests (the browser tests have their own)."""

import re
import time

from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.urls import reverse

PASSWORD = "a-Long-passw0rd!"


def sign_up(client, *, email: str, phone: str = "", **headers):
    data = {"email": email, "phone": phone, "password1": PASSWORD, "password2": PASSWORD}
    return client.post(reverse("account_signup"), data, **headers)


def sms_code(message: dict) -> str:
    # The code is the last word of the SMS in every language.
    return re.search(r"(\d{6})\s*$", message["body"]).group(1)


def confirmation_path(message) -> str:
    return re.search(r"https?://testserver(/\S+/)", message.body).group(1)


def totp_code(secret: str, at: float | None = None) -> str:
    return format_hotp_value(hotp_value(secret, int(at if at is not None else time.time()) // 30))
