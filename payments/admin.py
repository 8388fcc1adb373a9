from django.contrib import admin

from .models import Charge


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "purpose", "amount_minor", "currency", "status", "decline_kind", "payment_intent_id", "created_at"]
    list_filter = ["status", "purpose", "decline_kind", "currency"]
    search_fields = ["payment_intent_id", "user__email", "user__phone", "line__iccid"]
    list_select_related = ["user", "line"]
    raw_id_fields = ["user", "line", "renewal", "package"]
