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


def passed_two_factor(request) -> bool:
    """True when this session's login (or a later reauthentication) included an MFA step.
    Having an authenticator is not enough: force_login, a password reset or a session that
    has just activated TOTP never proved possession of it."""
    records = get_authentication_records(request, request.user)
    return any(record.get("method") == "mfa" for record in records)


class StaffAdminSite(admin.AdminSite):
    site_header = gettext_lazy("Axis eSIM operations")
    site_title = gettext_lazy("Axis eSIM operations")
    index_title = gettext_lazy("Operations")
    index_template = "admin/accounts/index.html"  # adds the operations page link

    def get_urls(self):
        operations = path(
            "operations/", self.admin_view(lambda request: operations_view(request, self)), name="operations"
        )
        return [operations, *super().get_urls()]

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
