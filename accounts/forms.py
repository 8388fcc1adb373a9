"""Forms of the customer's own settings, and our variant of allauth's login form."""

import zoneinfo

from allauth.account import forms as allauth_forms
from allauth.account.adapter import get_adapter
from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from .models import User


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


class LoginForm(allauth_forms.LoginForm):
    """allauth recognises "+86 138 0013 8000" as a phone number but then looks it up as typed;
    we look it up in the E.164 form it is stored in."""

    def clean_login(self) -> str:
        login = super().clean_login()
        if "@" in login:
            return login
        try:
            return get_adapter().phone_form_field(required=True).clean(login)
        except forms.ValidationError:
            return login
