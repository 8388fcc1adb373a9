"""Forms of the customer's own settings, and our variant of allauth's login form."""

import zoneinfo

from allauth.account import forms as allauth_forms
from allauth.account.adapter import get_adapter
from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from .models import User
from .phone import example_number, looks_like_phone, region_for_language


def time_zone_choices() -> list[tuple[str, str]]:
    zones = sorted(zone for zone in zoneinfo.available_timezones() if "/" in zone or zone == "UTC")
    return [(zone, zone.replace("_", " ")) for zone in zones]


class ProfileForm(forms.ModelForm):
    language = forms.ChoiceField(label=_("Language"), choices=settings.LANGUAGES)
    time_zone = forms.ChoiceField(
        label=_("Time zone"),
        choices=time_zone_choices,
        help_text=_("Dates and times on this site are shown in this zone."),
    )

    class Meta:
        model = User
        fields = ["name", "language", "time_zone"]
        labels = {"name": _("Name")}


class SignupForm(allauth_forms.SignupForm):
    """Sign-up with an email (a mobile number may be added) or with a mobile number only
    (docs/sign-up.md). `signup_with` says which page the customer chose; whichever was given is
    verified before the first login (accounts/stages.py)."""

    EMAIL, PHONE = "email", "phone"
    signup_with = forms.ChoiceField(choices=[(EMAIL, EMAIL), (PHONE, PHONE)], required=False, widget=forms.HiddenInput)

    def __init__(self, *args, signup_with: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        if self.is_bound:
            signup_with = self.data.get("signup_with", "")
        # Not `signup_with`: a template's form.signup_with is the hidden field, not this choice.
        self.chosen = self.PHONE if signup_with == self.PHONE else self.EMAIL
        self.initial["signup_with"] = self.chosen
        if self.chosen == self.PHONE:
            del self.fields["email"]
            self.fields["phone"].label = _("Mobile number")
            self.fields["phone"].required = True
            self.fields["phone"].widget.is_required = True
            self.fields["phone"].help_text = _("We will text you a code to confirm it.")
        else:
            self.fields["email"].required = True
            self.fields["email"].widget.is_required = True
            self.fields["email"].label = _("Email")
            self.fields["phone"].label = _("Mobile number (optional)")
        self.fields["phone"].widget.attrs["placeholder"] = example_number(region_for_language())

    def clean_email(self) -> str:
        if self.chosen == self.PHONE:
            return ""
        return super().clean_email()


class LoginForm(allauth_forms.LoginForm):
    """allauth recognises "+86 138 0013 8000" as a phone number but then looks it up as typed;
    we look it up in the E.164 form it is stored in."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["login"].label = _("Email or mobile number")
        self.fields["login"].widget.attrs["placeholder"] = ""

    def clean_login(self) -> str:
        # A local number ("138 0013 8000") is read in the language's region, as at sign-up.
        login = super().clean_login()
        if not looks_like_phone(login):
            return login
        try:
            return get_adapter().phone_form_field(required=True).clean(login)
        except forms.ValidationError:
            return login
