"""What the engine and the partner write, shown read-only: usage records and operator corrections,
the network outbox (with the operator's retry) and customer notices."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from accounts.history import record_change
from accounts.models import NOTICE_KIND_LABELS, NetworkCommand, Notice, UsageAdjustment, UsageRecord, UsageRetention
from accounts.templatetags.data_units import signed_data_size
from console.actions import OperatorPermissionsMixin, Outcome, confirmed_action
from console.admin.display import ReadableFieldsMixin
from partner.services.outbox import retry_command_now

from .history import ChangeHistoryInline, HistoryAdminMixin


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadableFieldsMixin, admin.ModelAdmin):
    """The partner's records as received. Read-only for everyone: a record is the proof that its
    bytes were counted, so a deleted one would count again when the partner re-sends it."""

    list_display = ["partner_record_id", "line", "bytes", "period_start", "received_at", "charged"]
    list_filter = ["charged"]  # uncharged: usage of a package replaced before it arrived (docs/usage.md)
    # Exact matches: each day partition's (partner_record_id, period_start) index answers the first,
    # the lines' ICCID index the second; a "contains" search would read every record ever kept.
    search_fields = ["=partner_record_id", "=line__iccid"]
    list_select_related = ["line"]
    # Counting hundreds of millions of rows for the paginator is a full scan (docs/usage.md, "History").
    show_full_result_count = False
    readonly_fields = [f.name for f in UsageRecord._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageRetention)
class UsageRetentionAdmin(HistoryAdminMixin, admin.ModelAdmin):
    """How long raw usage records are kept (docs/usage.md, "History"); one row, its changes in
    the history below the form. The model refuses a period shorter than the dedup window."""

    list_display = ["__str__", "days", "updated_at"]
    inlines = [ChangeHistoryInline]

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not UsageRetention.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageAdjustment)
class UsageAdjustmentAdmin(ReadableFieldsMixin, admin.ModelAdmin):
    """Operators' usage corrections (docs/usage.md, "Operator corrections"). Read-only for everyone:
    a correction is made on the line's "Correct usage" page and is undone only by another one."""

    list_display = ["created_at", "line", "amount", "operator", "reason", "package"]
    search_fields = ["line__iccid", "reason", "operator__email"]
    list_select_related = ["line", "operator", "package"]
    date_hierarchy = "created_at"
    readonly_fields = fields = [
        "amount" if f.name == "bytes" else f.name for f in UsageAdjustment._meta.fields if f.name != "id"
    ]

    class Media:
        css = {"all": ["admin-extra/usage-correction.css"]}

    @admin.display(description=_("Correction"), ordering="bytes")
    def amount(self, obj):
        return signed_data_size(obj.bytes)  # "−300 MB", as the customer's line page says it

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _retry_command(*, request, obj, reason, now) -> Outcome:
    before = {"status": obj.status, "attempts": obj.attempts, "next_attempt_at": obj.next_attempt_at}
    command = retry_command_now(command=obj, now=now)
    after = {"status": command.status, "attempts": command.attempts, "next_attempt_at": command.next_attempt_at}
    if after == before:
        return Outcome(False, _("Already delivered, or being sent right now."))
    record_change(
        obj=command, action="retry_now", actor=request.user, reason=reason, before=before, after=after, now=now
    )
    return Outcome(True)


@admin.register(NetworkCommand)
class NetworkCommandAdmin(ReadableFieldsMixin, OperatorPermissionsMixin, admin.ModelAdmin):
    """The outbox to the network partner: what was sent, what is retrying, what gave up."""

    list_display = ["id", "line", "command", "status", "attempts", "next_attempt_at", "delivered_at"]
    list_filter = ["status", "command"]
    search_fields = ["line__iccid", "reason"]
    list_select_related = ["line"]
    raw_id_fields = ["line"]
    readonly_fields = [f.name for f in NetworkCommand._meta.fields]
    inlines = [ChangeHistoryInline]
    # Sending a command again changes the line on the network: asked first and recorded.
    actions = [
        confirmed_action(
            name="retry_now_confirmed",
            description=_("Retry the selected commands now"),
            permission="retry_renewal",
            perform=_retry_command,
        ),
    ]

    def has_add_permission(self, request):
        return False  # commands come from services (enqueue_command), never typed in

    def has_delete_permission(self, request, obj=None):
        return False  # a deleted command is a state change the network never hears of


class NoticeKindFilter(admin.SimpleListFilter):
    """The kinds by their labels: `kind` has no choices of its own (accounts.models.NOTICE_KIND_LABELS)."""

    title = _("kind")
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return list(NOTICE_KIND_LABELS.items())

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(Notice)
class NoticeAdmin(ReadableFieldsMixin, admin.ModelAdmin):
    """Every message owed to a customer (docs/notifications.md): pending, sent, not sent, failed.
    Read-only for everyone: a notice is the record of what the customer was told, and the sender
    owns its state (a failed one is written again by its event, never edited into "pending")."""

    list_display = ["created_at", "user", "kind_label", "status", "attempts", "sent_at"]
    list_filter = ["status", NoticeKindFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["user__email", "line__iccid", "dedup_key", "last_error"]
    list_select_related = ["user", "line"]
    date_hierarchy = "created_at"
    readonly_fields = fields = ["kind_label" if f.name == "kind" else f.name for f in Notice._meta.fields]

    @admin.display(description=_("kind"), ordering="kind")
    def kind_label(self, obj):
        return obj.kind_label

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
