from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RenewalsConfig(AppConfig):
    name = "renewals"
    verbose_name = _("Auto-renewal")

    def ready(self) -> None:
        from payments import hooks, outcomes
        from payments.models import Charge

        from . import selectors, signals
        from .services import alerts, rules
        from .services import outcomes as renewal_outcomes

        signals.connect()
        # What a renewal charge's outcome means is this app's to say (docs/money.md).
        outcomes.register(Charge.Purpose.RENEWAL, renewal_outcomes.record_charge_outcome)
        # Operator alerts are kept here; payments raises them through this hook, not an import.
        outcomes.register_alert(alerts.alert_from_payments)
        # Which rules charge a saved method, and what a new default wakes, are this app's to say.
        hooks.register_method_users(
            find=rules.rules_using_method, move=rules.move_rules_to_method, default_changed=rules.payment_method_changed
        )
        hooks.register_hard_decline_codes(selectors.hard_decline_codes)
