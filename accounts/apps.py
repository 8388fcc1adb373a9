from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    default = True
    name = "accounts"
    verbose_name = _("Customers and lines")

    def ready(self):
        from . import signals  # noqa: F401


class StaffAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our site as `admin.site`, so every app's `@admin.register`
    lands on the site that demands two-factor authentication."""

    default = False
    default_site = "accounts.admin_site.StaffAdminSite"
