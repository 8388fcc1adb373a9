"""django-allauth hooks for our User model (email and/or phone, no username): where the phone
number lives, how verification codes leave by SMS, which language a new user keeps."""

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.fields import PhoneField
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .models import User
from .phone import to_e164
from .sms import send_sms


class PhoneNumberField(PhoneField):
    """allauth's PhoneField wants E.164 as typed ("+1…"); customers type a number the local way.
    We parse it in the language's region (accounts/phone.py) and store E.164 ("+8613800138000")."""

    def __init__(self, *args, **kwargs):
        kwargs["validators"] = []
        kwargs.setdefault("label", gettext_lazy("Mobile number"))
        super().__init__(*args, **kwargs)
        self.widget.attrs.update({"placeholder": "", "inputmode": "tel"})

    def to_python(self, value):
        value = super().to_python(value)
        return to_e164(value) if value else value


class SiteFromSettings:
    """What allauth's emails read from a Site, taken from settings.SITE_NAME."""

    def __init__(self) -> None:
        self.name = settings.SITE_NAME
        self.domain = settings.SITE_NAME

    def __str__(self) -> str:
        return self.name


class AccountAdapter(DefaultAccountAdapter):
    # allauth treats phone support as implemented only when all five phone hooks are overridden.
    def phone_form_field(self, **kwargs):
        return PhoneNumberField(**kwargs)

    def set_phone(self, user, phone, verified):
        user.phone = phone or None  # NULL, not "": two empty strings would collide on UNIQUE
        user.phone_verified = bool(phone) and verified
        if user.pk is not None:  # at sign-up save_user stores the new user with its phone
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
        send_sms(
            to=phone,
            body=_("Your %(site_name)s verification code is %(code)s")
            % {"site_name": settings.SITE_NAME, "code": code},
        )

    def send_account_already_exists_sms(self, phone):
        send_sms(
            to=phone,
            body=_("Someone tried to sign up for %(site_name)s with this number, which already has an account.")
            % {"site_name": settings.SITE_NAME},
        )

    # --- who the emails come from (docs/sign-up.md) ---------------------------------------------

    def format_email_subject(self, subject: str) -> str:
        return f"[{settings.SITE_NAME}] {subject}"

    def get_from_email(self) -> str:
        return settings.DEFAULT_FROM_EMAIL

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        # allauth's templates say "{{ current_site.name }}" and "register an account on
        # {{ current_site.domain }}": both are the product's name from settings, not the Sites row
        # (which says whatever host the first migrate ran on).
        context = {"current_site": SiteFromSettings(), **context}
        super().send_mail(template_prefix, email, context)

    # --- verify whichever was given -------------------------------------------------------------

    def get_login_stages(self) -> list[str]:
        return [
            "accounts.stages.VerifyEmailIfGivenStage"
            if path == "allauth.account.stages.EmailVerificationStage"
            else path
            for path in super().get_login_stages()
        ]

    def save_user(self, request, user, form, commit=True):
        # Emails sent later by workers have no request: they need the language of the sign-up.
        if not user.language:
            user.language = translation.get_language() or ""
        # allauth saves the user, then sets the phone: a phone-only user would break the
        # "email or phone" constraint in between, and an absent email must be NULL, not "".
        user = super().save_user(request, user, form, commit=False)
        user.email = user.email or None
        if commit:
            user.save()
        return user
