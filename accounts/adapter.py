"""django-allauth hooks for our User model (email and/or phone, no username): where the phone
number lives, how verification codes leave by SMS, which language a new user keeps."""

import logging

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.fields import PhoneField
from allauth.core import context
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .models import User
from .phone import to_e164
from .sms import SMSError, SMSRejected, masked, send_sms

logger = logging.getLogger(__name__)

# Where a failed verification SMS is remembered until the verify page shows it as a form error
# (accounts.views.SMSFailureFormErrorMixin): "rejected" (another number is needed) or "unavailable".
SMS_FAILURE_SESSION_KEY = "accounts_sms_failure"


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
        body = _("Your %(site_name)s verification code is %(code)s") % {
            "site_name": settings.SITE_NAME,
            "code": code,
        }
        try:
            send_sms(to=phone, body=body, retry=True)
            context.request.session.pop(SMS_FAILURE_SESSION_KEY, None)
        except SMSError as exc:
            # Logged by send_sms. allauth goes on to its verify page (its rate limit already
            # counted this send); that page says what went wrong instead of "code sent".
            request = context.request
            request._sms_failed = True
            request.session[SMS_FAILURE_SESSION_KEY] = "rejected" if isinstance(exc, SMSRejected) else "unavailable"

    def send_account_already_exists_sms(self, phone):
        # A failure is logged and not shown: the page must look the same whether the number had
        # an account (this text) or not (no text), or it would tell a stranger which numbers do.
        try:
            send_sms(
                to=phone,
                body=_("Someone tried to sign up for %(site_name)s with this number, which already has an account.")
                % {"site_name": settings.SITE_NAME},
            )
        except SMSError:
            logger.warning("sms_account_exists_warning_not_sent to=%s", masked(phone))

    def add_message(self, request, level, message_template=None, message_context=None, extra_tags="", message=None):
        if (
            getattr(request, "_sms_failed", False)
            and message_template == "account/messages/phone_verification_sent.txt"
        ):
            return  # nothing was sent: the verify page shows the failure instead
        super().add_message(request, level, message_template, message_context, extra_tags, message)

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
