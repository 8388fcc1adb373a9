"""The operator's view of customers and lines. Actions ask first and call services
(console.actions); every change to a line's state is history."""

import logging

from allauth.account.models import EmailAddress
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.history import acting, record_change
from accounts.models import Line, UsageAdjustment, User
from accounts.services import erasure
from accounts.services.line_status import resume_line, suspend_line, terminate_line
from accounts.templatetags.data_units import signed_data_size
from console.actions import OperatorPermissionsMixin, Outcome, confirmed_action, csv_export_action
from console.admin.display import ReadableFieldsMixin
from console.views import AssignLineView, LineImportView, UsageCorrectionView
from payments.gateways import GatewayError
from payments.models import Charge
from payments.selectors import payment_methods_for_user
from renewals.models import Renewal, RenewalRule
from renewals.services import account_closure, data_export

from .history import ChangeHistoryInline, HistoryAdminMixin

logger = logging.getLogger(__name__)


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


def _close_account(*, request, obj, reason, now) -> Outcome:
    """An operator closes an account at the customer's request (docs/data-rights.md); the same
    steps as the customer's own closure, attributed to the operator in the history."""
    if erasure.is_closed(obj):
        return Outcome(False, _("Already closed."))
    try:
        account_closure.close_account(
            user=obj, actor=request.user, closed_by=account_closure.OPERATOR, reason=reason, now=now
        )
    except account_closure.PaymentInFlight:
        return Outcome(False, _("A payment is at the processor; auto-renewal is off now. Try again in a few minutes."))
    except GatewayError:
        return Outcome(False, _("The payment processor did not answer; nothing was erased. Try again."))
    except erasure.CustomerOnly:
        return Outcome(False, _("Staff accounts are not closed this way: remove their staff status instead."))
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


class CustomerLineInline(ReadableFieldsMixin, admin.TabularInline):
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


class CustomerChargeInline(ReadableFieldsMixin, admin.TabularInline):
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
class UserAdmin(ReadableFieldsMixin, OperatorPermissionsMixin, BaseUserAdmin):
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
        confirmed_action(
            name="close_accounts",
            description=_("Close the account and erase the customer's personal data"),
            permission="close_account",
            perform=_close_account,
            reason_required=True,
            warning=_(
                "This cannot be undone. Auto-renewal is turned off and open renewals cancelled, payment "
                "methods are removed at the processor, every line is terminated, and the email, phone and "
                "name are erased. Payments and refunds are kept under a pseudonym. Download the customer's "
                "data first if they asked for it."
            ),
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
                may_export_data=self.has_export_customer_data_permission(request),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        export = self.admin_site.admin_view(self.data_export_view)
        return [path("<int:user_id>/data-export/", export, name="accounts_user_data_export"), *super().get_urls()]

    def data_export_view(self, request, user_id: int):
        """A subject access request: the customer's data as the customer downloads it themselves,
        and a history row saying which operator took it and when. A POST (the customer page's
        button), because it writes that row: no GET changes state."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_export_customer_data_permission(request):
            raise PermissionDenied
        customer = User.objects.filter(pk=user_id).first()
        if customer is None:
            raise Http404
        now = timezone.now()
        record_change(obj=customer, action="data_exported", actor=request.user, now=now)
        logger.info("data_export_downloaded user=%s by=operator operator=%s", customer.pk, request.user.pk)
        response = StreamingHttpResponse(
            data_export.export_user_data(customer, now=now), content_type="application/json; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{data_export.export_filename(customer, now)}"'
        response["Cache-Control"] = "no-store"
        return response


class UsageAdjustmentInline(ReadableFieldsMixin, admin.TabularInline):
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


class LineFieldsMixin:
    """The line form's fields: what may be typed when adding, only the label when changing. A mixin
    so that ReadableFieldsMixin, before it, shows the read-only ones in MB/GB and with zones."""

    def get_fields(self, request, obj=None):
        if obj is None:
            return LINE_ADD_FIELDS
        return [f.name for f in Line._meta.fields if f.editable and f.name != "id"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [name for name in LineFieldsMixin.get_fields(self, request, obj) if name not in LINE_EDITABLE_FIELDS]


@admin.register(Line)
class LineAdmin(ReadableFieldsMixin, LineFieldsMixin, OperatorPermissionsMixin, HistoryAdminMixin, admin.ModelAdmin):
    change_list_template = "admin/accounts/line/change_list.html"
    # Fits 1280 px beside the filters (docs/console.md, "Lists"); created is on the line's page.
    list_display = ["iccid", "owner", "status", "package", "data_remaining_bytes", "expires_at"]
    list_filter = [
        "status",
        "package",
        ("expires_at", admin.DateFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["=iccid", "iccid", "owner__email", "owner__phone", "matching_id"]
    list_select_related = ["owner", "package"]
    # Found by email or phone as one types (UserAdmin.search_fields), never a raw user id.
    autocomplete_fields = ["owner"]
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
        assign = self.admin_site.admin_view(AssignLineView.as_view(model_admin=self))
        return [
            path("import/", view, name="accounts_line_import"),
            path("assign/", assign, name="accounts_line_assign"),
            path("<int:line_id>/adjust-usage/", correct, name="accounts_line_adjust_usage"),
            *super().get_urls(),
        ]
