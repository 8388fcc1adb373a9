"""django-allauth hooks for our User model (email and/or phone, no username): where the phone
number lives, how verification codes leave by SMS, which language a new user keeps."""

import re

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.fields import PhoneField
from django.utils import translation
from django.utils.translation import gettext as _

from .models import User
from .sms import send_sms


class PhoneNumberField(PhoneField):
    # allauth's PhoneField runs its E.164 validator before it strips separators, so
    # "+86 138 0013 8000" would be refused. We store E.164 ("+8613800138000").
    def to_python(self, value):
        value = super().to_python(value)
        return re.sub(r"[\s\-().]", "", value) if value else value


class AccountAdapter(DefaultAccountAdapter):
    # allauth treats phone support as implemented only when all five phone hooks are overridden.
    def phone_form_field(self, **kwargs):
        return PhoneNumberField(**kwargs)

    def set_phone(self, user, phone, verified):
        user.phone = phone or None  # NULL, not "": two empty strings would collide on UNIQUE
        user.phone_verified = bool(phone) and verified
        user.save(update_fields=["phone", "phone_verified"])

    def get_phone(self, user):
        if user.phone:
            return user.phone, user.phone_verified
        return None

    def set_phone_verified(self, user, phone):
        self.set_phone(user, phone, True)

    def get_user_by_phone(self, phone):
        return User.objects.filter(phone=phone).first()

    def send_verification_code_sms(self, user, phone, code, **kwargs):
        # The code stays the last word of the text in every language: tests and autofill read it there.
        send_sms(to=phone, body=_("Your Axis eSIM verification code is %(code)s") % {"code": code})

    def send_account_already_exists_sms(self, phone):
        send_sms(
            to=phone, body=_("Someone tried to sign up for Axis eSIM with this number, which already has an account.")
        )

    def save_user(self, request, user, form, commit=True):
        # Emails sent later by workers have no request: they need the language of the sign-up.
        if not user.language:
            user.language = translation.get_language() or ""
        return super().save_user(request, user, form, commit)
