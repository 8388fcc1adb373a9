"""The operator's view of eSIM orders (docs/provisioning.md): state, every ES2+ call and
notification, and confirmed actions that go through provisioning's services: retry now, cancel
with refund (a profile never downloaded), resolve a failed order's alert. The pool of imported
ICCIDs is listed too."""

from django.contrib import admin
from django.urls import path
from django.utils.translation import gettext_lazy as _

from accounts.history import record_change
from console.actions import OperatorPermissionsMixin, Outcome, confirmed_action
from console.admin.history import ChangeHistoryInline
from console.views import ProfileImportView
from provisioning import services
from provisioning.models import Es2Call, Profile, ProfileOrder


class Es2CallInline(admin.TabularInline):
    model = Es2Call
    extra = 0
    can_delete = False
    fields = [
        "created_at",
        "function",
        "function_call_id",
        "outcome",
        "subject_code",
        "reason_code",
        "message",
        "http_status",
        "actor",
    ]
    readonly_fields = fields
    ordering = ["created_at", "id"]

    def has_add_permission(self, request, obj=None):
        return False


def _retry(*, request, obj, reason, now) -> Outcome:
    try:
        services.retry_now(order_id=obj.pk, operator=request.user, now=now)
    except services.OrderNotChangeable:
        return Outcome(False, _("Only an order still being placed can be retried."))
    record_change(obj=obj, action="retried", actor=request.user, reason=reason, before={}, after={}, now=now)
    return Outcome(True)


def _cancel(*, request, obj, reason, now) -> Outcome:
    before = {"status": obj.status}
    try:
        order = services.cancel_and_refund(order_id=obj.pk, operator=request.user, now=now)
    except services.OrderNotChangeable as exc:
        return Outcome(False, _("Not cancelled: %(reason)s") % {"reason": exc})
    record_change(
        obj=order,
        action="cancelled",
        actor=request.user,
        reason=reason,
        before=before,
        after={"status": order.status},
        now=now,
    )
    return Outcome(True)


def _resolve(*, request, obj, reason, now) -> Outcome:
    services.resolve_alert(order_id=obj.pk, now=now)
    record_change(obj=obj, action="alert_resolved", actor=request.user, reason=reason, before={}, after={}, now=now)
    return Outcome(True)


@admin.register(ProfileOrder)
class ProfileOrderAdmin(OperatorPermissionsMixin, admin.ModelAdmin):
    list_display = ["id", "user", "package", "status", "device_state", "iccid", "attempts", "created_at", "line"]
    list_filter = ["status", "source", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=iccid", "user__email", "user__phone", "=charge__payment_intent_id"]
    list_select_related = ["user", "package", "line"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    inlines = [Es2CallInline, ChangeHistoryInline]
    readonly_fields = [f.name for f in ProfileOrder._meta.fields]
    actions = [
        confirmed_action(
            name="retry_orders",
            description=_("Retry the selected eSIM orders now"),
            permission="retry_renewal",
            perform=_retry,
            warning=_("The next ES2+ step is sent now, with the same call identifier (never a second order)."),
        ),
        confirmed_action(
            name="cancel_and_refund_orders",
            description=_("Cancel the selected eSIM orders and refund them"),
            permission="refund_charge",
            perform=_cancel,
            warning=_(
                "The profile is cancelled at the SM-DP+ (it cannot be installed any more), the line is "
                "terminated and the payment refunded. Only for profiles never downloaded."
            ),
        ),
        confirmed_action(
            name="resolve_order_alerts",
            description=_("Mark the selected failed orders as handled"),
            permission="retry_renewal",
            perform=_resolve,
        ),
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Profile)
class ProfileAdmin(OperatorPermissionsMixin, admin.ModelAdmin):
    list_display = ["iccid", "profile_type", "status", "imported_at", "assigned_at"]
    list_filter = ["status", "profile_type"]
    search_fields = ["=iccid"]
    readonly_fields = ["status", "assigned_at"]
    change_list_template = "admin/provisioning/profile/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(ProfileImportView.as_view(model_admin=self))
        return [path("import/", view, name="provisioning_profile_import"), *super().get_urls()]

    def has_delete_permission(self, request, obj=None):
        return False
