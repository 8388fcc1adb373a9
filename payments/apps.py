from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = _("Payments")

    def ready(self) -> None:
        from . import gateways, webhooks  # noqa: F401  (webhooks: connects the event receivers)

        gateways.configure()
