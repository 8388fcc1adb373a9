from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = _("eSIM provisioning")

    def ready(self) -> None:
        from payments import outcomes

        from . import services

        # A paid purchase with no line is a new eSIM: its order is written with the payment.
        outcomes.register_new_line_purchase(services.order_for_paid_charge)
