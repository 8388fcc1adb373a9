from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    default = True
    name = "accounts"
    verbose_name = _("Customers and lines")

    def ready(self):
        from . import history, signals  # noqa: F401

        history.connect()
