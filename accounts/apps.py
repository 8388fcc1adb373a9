from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    default = True
    name = "accounts"
    verbose_name = _("Customers and lines")

    def ready(self):
        from django.db.models.signals import post_migrate

        from . import history, roles, signals  # noqa: F401

        history.connect()
        post_migrate.connect(roles.on_post_migrate, sender=self, dispatch_uid="accounts-operator-groups")


class StaffAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our site as `admin.site`, so every app's `@admin.register`
    lands on the site that demands two-factor authentication."""

    default = False
    default_site = "accounts.admin_site.StaffAdminSite"
