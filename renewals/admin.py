"""The operator's view of renewals: rules, renewals (retry now, cancel), the retry policy, alerts.
Admin actions call the engine's services; nothing here changes state by itself."""
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .models import Alert, Renewal, RenewalRule, RetryPolicy


@admin.register(RetryPolicy)
class RetryPolicyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "retry_delays_minutes", "grace_hours", "minimum_renewal_minor", "updated_at"]


@admin.register(RenewalRule)
class RenewalRuleAdmin(admin.ModelAdmin):
    list_display = ["line", "enabled", "package", "trigger_data_below_mb", "trigger_hours_before_expiry", "overage_policy"]
    list_filter = ["enabled", "overage_policy"]
    search_fields = ["line__iccid", "line__owner__email"]
    list_select_related = ["line", "package"]
    raw_id_fields = ["line"]


@admin.register(Renewal)
class RenewalAdmin(admin.ModelAdmin):
    list_display = ["id", "line", "status", "attempts", "failures", "next_attempt_at", "amount_minor", "currency", "created_at"]
    list_filter = ["status"]
    search_fields = ["line__iccid", "line__owner__email"]
    list_select_related = ["line"]
    raw_id_fields = ["line", "rule"]
    actions = ["retry_now", "cancel"]

    @admin.action(description=_("Retry now"))
    def retry_now(self, request, queryset):
        now = timezone.now()
        done = sum(services.retry_now(renewal_id=pk, now=now) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, ngettext("%(count)d renewal will be charged at the next tick.",
                                            "%(count)d renewals will be charged at the next tick.", done) % {"count": done}, messages.SUCCESS)

    @admin.action(description=_("Cancel"))
    def cancel(self, request, queryset):
        now = timezone.now()
        done = sum(services.cancel_renewal(renewal_id=pk, now=now) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, ngettext("%(count)d renewal cancelled.", "%(count)d renewals cancelled.", done) % {"count": done}, messages.SUCCESS)


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "line", "renewal", "message", "resolved_at"]
    list_filter = ["kind", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["line__iccid", "message"]
    list_select_related = ["line", "renewal"]
    raw_id_fields = ["line", "renewal"]
    actions = ["resolve"]

    @admin.action(description=_("Mark resolved"))
    def resolve(self, request, queryset):
        done = queryset.filter(resolved_at__isnull=True).update(resolved_at=timezone.now())
        self.message_user(request, ngettext("%(count)d alert resolved.", "%(count)d alerts resolved.", done) % {"count": done}, messages.SUCCESS)
