from django.contrib import admin

from .models import Renewal, RenewalRule, RetryPolicy


@admin.register(RetryPolicy)
class RetryPolicyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "retry_delays_minutes", "grace_hours", "updated_at"]


@admin.register(RenewalRule)
class RenewalRuleAdmin(admin.ModelAdmin):
    list_display = ["line", "enabled", "package", "trigger_data_below_mb", "trigger_hours_before_expiry", "overage_policy"]
    list_filter = ["enabled", "overage_policy"]
    search_fields = ["line__iccid", "line__owner__email"]
    list_select_related = ["line", "package"]
    raw_id_fields = ["line"]


@admin.register(Renewal)
class RenewalAdmin(admin.ModelAdmin):
    list_display = ["id", "line", "status", "attempts", "next_attempt_at", "amount_minor", "currency", "created_at"]
    list_filter = ["status"]
    search_fields = ["line__iccid", "line__owner__email"]
    list_select_related = ["line"]
    raw_id_fields = ["line", "rule"]
