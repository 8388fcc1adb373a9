from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RenewalsConfig(AppConfig):
    name = "renewals"
    verbose_name = _("Auto-renewal")

    def ready(self):
        from . import signals

        signals.connect()
