"""The operator's view of customers, lines, packages and the outbox. Actions ask first and call
services (console.actions); every change to a line's state or a package is history."""

from allauth.account.models import EmailAddress
from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.contenttypes.admin import GenericTabularInline
from django.urls import path
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from accounts.history import acting, record_change
from accounts.models import (
    NOTICE_KIND_LABELS,
    ChangeRecord,
    Line,
    NetworkCommand,
    Notice,
    Package,
    UsageAdjustment,
    UsageRecord,
    User,
)
from accounts.services.line_status import resume_line, suspend_line, terminate_line
from accounts.templatetags.data_units import signed_data_size
from console.actions import OperatorPermissionsMixin, Outcome, confirmed_action, csv_export_action
from console.views import LineImportView, UsageCorrectionView
from partner.services.outbox import retry_command_now
from payments.models import Charge
from payments.selectors import payment_methods_for_user
from renewals.models import Renewal, RenewalRule

MB = 1024**2  # rule thresholds are in MB (renewals.services.MB)


class ChangeHistoryInline(GenericTabularInline):
    """The object's change history on its own page: who, when, what, before and after."""

    model = ChangeRecord
    ct_field = "content_type"
    ct_fk_field = "object_id"
    fields = ["created_at", "actor", "action", "reason", "before", "after"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ["-created_at", "-id"]
    verbose_name_plural = _("change history")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class HistoryAdminMixin:
    """Saves and deletions from the admin are attributed to the operator in the history."""

    def save_model(self, request, obj, form, change):
        with acting(request.user):
            super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        with acting(request.user):
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with acting(request.user):
            for obj in queryset:  # one by one, so each deletion writes its history row
                obj.delete()


def _resend_verification(*, request, obj, reason, now) -> Outcome:
    addresses = list(EmailAddress.objects.filter(user=obj, verified=False))
    if not addresses:
        return Outcome(False, _("No unverified email address."))
    for address in addresses:
        address.send_confirmation(request)
    record_change(
        obj=obj,
        action="verification_email_sent",
        actor=request.user,
        reason=reason,
        after={"emails": [address.email for address in addresses]},
        now=now,
    )
    return Outcome(True)


def _suspend(*, request, obj, reason, now) -> Outcome:
    if suspend_line(line_id=obj.pk, reason=reason, actor=request.user, now=now):
        return Outcome(True)
    return Outcome(False, _("Already suspended or terminated."))


def _resume(*, request, obj, reason, now) -> Outcome:
    if resume_line(line_id=obj.pk, reason=reason, actor=request.user, now=now):
        return Outcome(True)
    return Outcome(False, _("Only a suspended line can be resumed."))


def _terminate(*, request, obj, reason, now) -> Outcome:
    if terminate_line(line_id=obj.pk, reason=reason, actor=request.user, now=now):
        return Outcome(True)
    return Outcome(False, _("Already terminated."))


def _user_rows(queryset):
    for user in queryset.order_by("pk"):
        yield [
            user.pk,
            user.email or "",
            user.phone or "",
            user.name,
            user.language,
            user.is_active,
            user.date_joined.isoformat(),
        ]


def _line_rows(queryset):
    for line in queryset.select_related("owner", "package").order_by("pk"):
        yield [
            line.pk,
            line.iccid,
            line.smdp_address,
            line.matching_id,
            line.status,
            str(line.owner or ""),
            line.package.name if line.package else "",
            line.data_remaining_bytes,
            line.data_used_bytes,
            line.expires_at.isoformat() if line.expires_at else "",
        ]


class CustomerLineInline(admin.TabularInline):
    model = Line
    fk_name = "owner"
    fields = ["iccid", "status", "package", "data_remaining_bytes", "data_used_bytes", "expires_at"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = _("lines")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("package")

    def has_add_permission(self, request, obj=None):
        return False


class CustomerChargeInline(admin.TabularInline):
    """The customer's charges on the customer page (console.admin.accounts.UserAdmin), newest first."""

    model = Charge
    fk_name = "user"
    fields = [
        "created_at",
        "purpose",
        "amount_minor",
        "currency",
        "status",
        "decline_kind",
        "failure_message",
        "payment_method_summary",
        "payment_intent_id",
    ]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(User)
class UserAdmin(OperatorPermissionsMixin, BaseUserAdmin):
    """The customer page: everything about the customer on one screen (lines and charges inline;
    rules, renewals and payment method summaries below, see the change_form template)."""

    change_form_template = "admin/accounts/user/change_form.html"
    ordering = ["-date_joined"]
    list_display = ["email", "phone", "name", "is_staff", "date_joined"]
    search_fields = ["email", "phone", "name", "=lines__iccid", "=charges__payment_intent_id"]
    fieldsets = (
        (None, {"fields": ("email", "phone", "phone_verified", "password")}),
        (_("Profile"), {"fields": ("name", "language", "time_zone")}),
        (_("Permissions"), {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "phone", "password1", "password2")}),)
    list_filter = ["is_staff", "is_active", "phone_verified", "language", ("date_joined", admin.DateFieldListFilter)]
    date_hierarchy = "date_joined"
    actions = [
        confirmed_action(
            name="resend_verification_email",
            description=_("Resend the email verification link"),
            permission="email_customer",
            perform=_resend_verification,
        ),
        csv_export_action(
            name="export_customers_csv",
            filename="customers.csv",
            header=[
                "id",
                _("email address"),
                _("phone number"),
                _("name"),
                _("language"),
                _("active"),
                _("date joined"),
            ],
            rows=_user_rows,
        ),
    ]

    def get_inlines(self, request, obj):
        if obj is None:
            return []
        return [CustomerLineInline, CustomerChargeInline, ChangeHistoryInline]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        user = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if user is not None:
            extra_context.update(
                customer_rules=RenewalRule.objects.filter(line__owner=user)
                .select_related("line", "package")
                .order_by("line_id"),
                customer_renewals=Renewal.objects.filter(line__owner=user)
                .select_related("line", "package")
                .order_by("-created_at", "-id")[:20],
                customer_payment_methods=payment_methods_for_user(user),
            )
        return super().change_view(request, object_id, form_url, extra_context)


class PackageForm(forms.ModelForm):
    """Refuses an allowance or validity that the enabled auto-renewal rules buying this package
    could not lift their lines above: each renewal would leave the line at its trigger and the
    next would open at once, up to the rule's daily cap (the rule form checks the same per rule)."""

    class Meta:
        model = Package
        fields = ["name", "data_allowance_bytes", "validity_days", "price_minor", "currency", "active"]

    def clean(self):
        data = super().clean()
        if self.instance.pk is None:
            return data
        rules = RenewalRule.objects.filter(package=self.instance, enabled=True).select_related("line")
        allowance, days = data.get("data_allowance_bytes"), data.get("validity_days")
        if allowance is not None:
            self._refuse_if_rules(
                rules.filter(trigger_data_below_mb__gte=-(-allowance // MB)),
                "data_allowance_bytes",
                ngettext_lazy(
                    "%(count)d auto-renewal rule buys this package with a data threshold at or above this allowance: each"
                    " renewal would leave its line at the threshold and start the next at once (lines: %(lines)s)."
                    " Lower that threshold first.",
                    "%(count)d auto-renewal rules buy this package with data thresholds at or above this allowance: each"
                    " renewal would leave its line at the threshold and start the next at once (lines: %(lines)s)."
                    " Lower those thresholds first.",
                    "count",
                ),
            )
        if days is not None:
            self._refuse_if_rules(
                rules.filter(trigger_hours_before_expiry__gte=days * 24),
                "validity_days",
                ngettext_lazy(
                    "%(count)d auto-renewal rule buys this package and renews as long or longer before the validity ends"
                    " than this validity: each renewal would start the next at once (lines: %(lines)s). Shorten that time first.",
                    "%(count)d auto-renewal rules buy this package and renew as long or longer before the validity ends"
                    " than this validity: each renewal would start the next at once (lines: %(lines)s). Shorten those times first.",
                    "count",
                ),
            )
        return data

    def _refuse_if_rules(self, rules, field: str, message) -> None:
        count = rules.count()
        if count:
            lines = ", ".join(rule.line.iccid for rule in rules.order_by("line_id")[:5]) + (", …" if count > 5 else "")
            self.add_error(field, message % {"count": count, "lines": lines})


@admin.register(Package)
class PackageAdmin(HistoryAdminMixin, admin.ModelAdmin):
    form = PackageForm
    list_display = ["name", "data_allowance_bytes", "validity_days", "price_minor", "currency", "active"]
    list_filter = ["active", "currency"]
    search_fields = ["name"]
    ordering = ["currency", "price_minor", "name"]
    inlines = [ChangeHistoryInline]


class UsageAdjustmentInline(admin.TabularInline):
    """The line's usage corrections on its page, read-only (made through "Correct usage")."""

    model = UsageAdjustment
    fields = ["created_at", "amount", "reason", "operator", "package", "period_started_at"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ["-created_at", "-id"]

    @admin.display(description=_("Correction"))
    def amount(self, obj):
        return signed_data_size(obj.bytes)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("operator", "package")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# What an operator may type on a line's form. Everything else (status, counters, package, validity,
# owner, the activation code) belongs to the services: the status through the suspend / resume
# actions, which send the network command and write history; data and validity through usage and
# apply_package. A form that held those fields would write back the values it was opened with.
LINE_ADD_FIELDS = ["iccid", "smdp_address", "matching_id", "owner", "package", "label"]
LINE_EDITABLE_FIELDS = ["label"]


@admin.register(Line)
class LineAdmin(OperatorPermissionsMixin, HistoryAdminMixin, admin.ModelAdmin):
    change_list_template = "admin/accounts/line/change_list.html"
    list_display = ["iccid", "owner", "status", "package", "data_remaining_bytes", "expires_at", "created_at"]
    list_filter = [
        "status",
        "package",
        ("expires_at", admin.DateFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["=iccid", "iccid", "owner__email", "owner__phone", "matching_id"]
    list_select_related = ["owner", "package"]
    raw_id_fields = ["owner"]
    ordering = ["-created_at", "-id"]
    inlines = [UsageAdjustmentInline, ChangeHistoryInline]
    actions = [
        confirmed_action(
            name="suspend_lines",
            description=_("Suspend the line (sends the network command)"),
            permission="suspend_line",
            perform=_suspend,
            reason_required=True,
        ),
        confirmed_action(
            name="resume_lines",
            description=_("Resume the line (sends the network command)"),
            permission="resume_line",
            perform=_resume,
            reason_required=True,
        ),
        # Suspending's right: termination is the suspension that is never lifted.
        confirmed_action(
            name="terminate_lines",
            description=_("Terminate the line for good (sends the network command, cancels its renewals)"),
            permission="suspend_line",
            perform=_terminate,
            reason_required=True,
        ),
        csv_export_action(
            name="export_lines_csv",
            filename="lines.csv",
            header=[
                "id",
                _("ICCID"),
                _("SM-DP+ address"),
                _("matching ID"),
                _("status"),
                _("owner"),
                _("active package"),
                _("data remaining (bytes)"),
                _("data used (bytes)"),
                _("valid until"),
            ],
            rows=_line_rows,
        ),
    ]

    def get_fields(self, request, obj=None):
        if obj is None:
            return LINE_ADD_FIELDS
        return [f.name for f in Line._meta.fields if f.editable and f.name != "id"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [name for name in self.get_fields(request, obj) if name not in LINE_EDITABLE_FIELDS]

    def save_model(self, request, obj, form, change):
        if change:
            # Only what the form changed: the counters loaded with this request are already stale
            # if usage arrived meanwhile, and must not be written back.
            changed = [name for name in form.changed_data if name in LINE_EDITABLE_FIELDS]
            if changed:
                with acting(request.user):
                    obj.save(update_fields=[*changed, "updated_at"])
            return
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None):
        return False  # a line ends by termination (a state, with its network command), never by deletion

    def get_urls(self):
        view = self.admin_site.admin_view(LineImportView.as_view(model_admin=self))
        correct = self.admin_site.admin_view(UsageCorrectionView.as_view(model_admin=self))
        return [
            path("import/", view, name="accounts_line_import"),
            path("<int:line_id>/adjust-usage/", correct, name="accounts_line_adjust_usage"),
            *super().get_urls(),
        ]


@admin.register(ChangeRecord)
class ChangeRecordAdmin(admin.ModelAdmin):
    """All history in one list, for questions like "what did this operator do today"."""

    list_display = ["created_at", "content_type", "object_repr", "action", "actor", "reason"]
    list_filter = ["action", "content_type", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["object_repr", "object_id", "actor__email", "reason"]
    list_select_related = ["content_type", "actor"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "created_at",
        "content_type",
        "object_id",
        "object_repr",
        "action",
        "actor",
        "reason",
        "before",
        "after",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The partner's records as received. Read-only for everyone: a record is the proof that its
    bytes were counted, so a deleted one would count again when the partner re-sends it."""

    list_display = ["partner_record_id", "line", "bytes", "period_start", "received_at", "charged"]
    list_filter = ["charged"]  # uncharged: usage of a package replaced before it arrived (docs/usage.md)
    search_fields = ["partner_record_id", "line__iccid"]
    list_select_related = ["line"]
    readonly_fields = [f.name for f in UsageRecord._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageAdjustment)
class UsageAdjustmentAdmin(admin.ModelAdmin):
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
class NetworkCommandAdmin(OperatorPermissionsMixin, admin.ModelAdmin):
    """The outbox to the network partner: what was sent, what is retrying, what gave up."""

    list_display = [
        "id",
        "line",
        "command",
        "status",
        "attempts",
        "next_attempt_at",
        "last_response_code",
        "created_at",
        "delivered_at",
    ]
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
class NoticeAdmin(admin.ModelAdmin):
    """Every message owed to a customer (docs/notifications.md): pending, sent, not sent, failed.
    Read-only for everyone: a notice is the record of what the customer was told, and the sender
    owns its state (a failed one is written again by its event, never edited into "pending")."""

    list_display = [
        "id",
        "created_at",
        "user",
        "line",
        "kind_label",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "language",
    ]
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
