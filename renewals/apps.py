from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RenewalsConfig(AppConfig):
    name = "renewals"
    verbose_name = _("Auto-renewal")

    def ready(self) -> None:
        from payments import outcomes
        from payments.models import Charge

        from . import services, signals

        signals.connect()
        # What a renewal charge's outcome means is this app's to say (docs/money.md).
        outcomes.register(Charge.Purpose.RENEWAL, services.record_charge_outcome)
        # Operator alerts are kept here; payments raises them through this hook, not an import.
        outcomes.register_alert(services.alert_from_payments)
