from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from . import services
from .models import Charge


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "purpose", "amount_minor", "currency", "status", "decline_kind", "payment_intent_id", "created_at"]
    list_filter = ["status", "purpose", "decline_kind", "currency"]
    search_fields = ["payment_intent_id", "user__email", "user__phone", "line__iccid"]
    list_select_related = ["user", "line"]
    raw_id_fields = ["user", "line", "renewal", "package"]
    actions = ["refund_in_full"]
    # The ledger is written by services only; the admin reads it and acts through services.
    readonly_fields = [f.name for f in Charge._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description=_("Refund what is left of the selected payments"))
    def refund_in_full(self, request, queryset):
        for charge in queryset:
            try:
                services.refund_charge(charge_id=charge.pk, operator=request.user)
            except services.PaymentError as exc:
                self.message_user(request, _("Charge %(id)s: %(reason)s") % {"id": charge.pk, "reason": exc.user_message},
                                  messages.ERROR)
            else:
                self.message_user(request, _("Charge %(id)s refunded.") % {"id": charge.pk}, messages.SUCCESS)
