from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from .models import Line, NetworkCommand, Package, UsageRecord, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["-date_joined"]
    list_display = ["email", "phone", "name", "is_staff", "date_joined"]
    search_fields = ["email", "phone", "name"]
    fieldsets = (
        (None, {"fields": ("email", "phone", "phone_verified", "password")}),
        (_("Profile"), {"fields": ("name", "language", "time_zone")}),
        (_("Permissions"), {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "phone", "password1", "password2")}),)
    list_filter = ["is_staff", "is_active"]


@admin.register(Package)
class PackageAdmin(admin.ModelAdmin):
    list_display = ["name", "data_allowance_bytes", "validity_days", "price_minor", "currency", "active"]
    list_filter = ["active", "currency"]
    search_fields = ["name"]


@admin.register(Line)
class LineAdmin(admin.ModelAdmin):
    list_display = ["iccid", "owner", "status", "package", "data_remaining_bytes", "expires_at"]
    list_filter = ["status"]
    search_fields = ["iccid", "owner__email", "owner__phone"]
    list_select_related = ["owner", "package"]
    raw_id_fields = ["owner"]


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ["partner_record_id", "line", "bytes", "period_start", "received_at"]
    search_fields = ["partner_record_id", "line__iccid"]
    list_select_related = ["line"]
    raw_id_fields = ["line"]


@admin.register(NetworkCommand)
class NetworkCommandAdmin(admin.ModelAdmin):
    """The outbox to the network partner: what was sent, what is retrying, what gave up."""

    list_display = ["id", "line", "command", "status", "attempts", "next_attempt_at", "last_response_code", "created_at", "delivered_at"]
    list_filter = ["status", "command"]
    search_fields = ["line__iccid", "reason"]
    list_select_related = ["line"]
    raw_id_fields = ["line"]
    readonly_fields = [f.name for f in NetworkCommand._meta.fields]
    actions = ["retry_now"]

    def has_add_permission(self, request):
        return False  # commands come from services (enqueue_command), never typed in

    @admin.action(description=_("Retry the selected commands now"))
    def retry_now(self, request, queryset):
        from .services.network import retry_command_now

        for command in queryset:
            retry_command_now(command=command)
        self.message_user(request, _("The selected commands will be sent at the next sweep."))
