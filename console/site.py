"""The operator's admin: staff get in only after passing a TOTP step in this session."""

from allauth.account.authentication import get_authentication_records
from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .views import operations_view

# The home page's order (docs/console.md, "The admin home"): what operators open every day first,
# then the records and settings behind it. Other apps' models (groups, email addresses, sites)
# follow as Django lists them; the processor's mirror (dj-stripe, some 45 models) is one link.
DAILY_MODELS = [
    ("accounts", "User"),
    ("accounts", "Line"),
    ("accounts", "Package"),
    ("renewals", "RenewalRule"),
    ("renewals", "Renewal"),
    ("payments", "Charge"),
    ("renewals", "Alert"),
    ("accounts", "Notice"),
    ("accounts", "NetworkCommand"),
]
RECORD_APPS = ("accounts", "payments", "renewals", "partner")
PROCESSOR_MIRROR_APP = "djstripe"


def passed_two_factor(request) -> bool:
    """True when this session's login (or a later reauthentication, or the TOTP activation, which
    checks a code from the new authenticator: console.two_factor) included an MFA step. Having an
    authenticator is not enough: force_login or a password reset never proved possession of it."""
    records = get_authentication_records(request, request.user)
    return any(record.get("method") == "mfa" for record in records)


class StaffAdminSite(admin.AdminSite):
    site_header = gettext_lazy("Axis eSIM operations")
    site_title = gettext_lazy("Axis eSIM operations")
    index_title = gettext_lazy("Operations")
    index_template = "admin/accounts/index.html"  # adds the operations page link
    # The side bar repeats the home page and takes 270 px of a 1280 px screen from the lists,
    # which then hide their last columns (amount, status) behind a scroll (docs/console.md, "Lists").
    enable_nav_sidebar = False

    def get_urls(self):
        operations = path(
            "operations/", self.admin_view(lambda request: operations_view(request, self)), name="operations"
        )
        return [operations, *super().get_urls()]

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        if app_label is not None:
            return apps
        models = {(app["app_label"], model["object_name"]): model for app in apps for model in app["models"]}
        daily = [models.pop(key) for key in DAILY_MODELS if key in models]
        records = [model for key, model in models.items() if key[0] in RECORD_APPS]
        grouped = []
        if daily:
            grouped.append(self._group(_("Customers, lines and money"), "daily", daily))
        if records:
            grouped.append(self._group(_("Records and settings"), "records", records))
        grouped += [app for app in apps if app["app_label"] not in (*RECORD_APPS, PROCESSOR_MIRROR_APP)]
        mirror = next((app for app in apps if app["app_label"] == PROCESSOR_MIRROR_APP), None)
        if mirror is not None:
            # One row for the whole mirror; its own page (Django's app index) lists the models.
            # Named apart from our ledger: dj-stripe's "Charges" are Stripe's copies, not ours.
            entry = {
                "name": _("Stripe objects as last synced (%(count)d kinds)") % {"count": len(mirror["models"])},
                "object_name": "processormirror",
                "admin_url": mirror["app_url"],
                "add_url": None,
                "view_only": True,
                "perms": {"view": True},
            }
            grouped.append(
                {**self._group(_("Processor mirror"), PROCESSOR_MIRROR_APP, [entry]), "app_url": mirror["app_url"]}
            )
        return grouped

    def _group(self, name, label: str, models: list) -> dict:
        return {
            "name": name,
            "app_label": label,
            "app_url": models[0]["admin_url"] or "",
            "has_module_perms": True,
            "models": models,
        }

    def has_permission(self, request):
        return super().has_permission(request) and passed_two_factor(request)

    def login(self, request, extra_context=None):
        # Django's admin login form would skip allauth's MFA stage, so it is never shown.
        next_url = request.GET.get(REDIRECT_FIELD_NAME, "")
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = reverse("admin:index", current_app=self.name)
        if self.has_permission(request):
            return redirect(next_url)
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(next_url, reverse("account_login"))
        if not (user.is_active and user.is_staff):
            raise PermissionDenied
        if not is_mfa_enabled(user, [Authenticator.Type.TOTP]):
            messages.warning(request, _("Staff accounts must set up two-factor authentication before using the admin."))
            return redirect("mfa_activate_totp")
        # Has TOTP, but this session has not passed it (just activated it, or logged in another way).
        return redirect_to_login(next_url, reverse("mfa_reauthenticate"))
