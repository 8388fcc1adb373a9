from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = _("Operator console")

    def ready(self) -> None:
        from django.apps import apps
        from django.db.models.signals import post_migrate

        from . import roles

        # post_migrate is sent only for apps with models: keep the groups in step after accounts'.
        post_migrate.connect(
            roles.on_post_migrate, sender=apps.get_app_config("accounts"), dispatch_uid="accounts-operator-groups"
        )


class StaffAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our site as `admin.site`, so every app's `@admin.register`
    lands on the site that demands two-factor authentication."""

    default = False
    default_site = "console.site.StaffAdminSite"
