from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from accounts.history import record_change
from console.actions import OperatorPermissionsMixin, Outcome, confirmed_action, csv_export_action
from console.admin.display import ReadableFieldsMixin
from console.admin.history import ChangeHistoryInline
from payments.models import Charge
from payments.money import plain_amount
from payments.services import errors, refunds


def _refund(*, request, obj, reason, now) -> Outcome:
    """One confirmed refund through the payments service, written to the change history."""
    before = {"status": obj.status, "refunded_minor": obj.refunded_minor}
    # Money taken for a purpose that no longer wanted it (paid twice, paid after its cycle closed or
    # its line ended) is `refund_due`: the engine refunds it after the commit and its sweep retries;
    # the operator can make that same refund now (exactly once: the processor's refunds are read
    # first). Rows from before `refund_due` existed are failed / duplicate_payment.
    try:
        if obj.status == Charge.Status.REFUND_DUE:
            charge = refunds.refund_due_charge(charge_id=obj.pk)
            if charge.status == Charge.Status.REFUND_DUE:
                return Outcome(False, _("The payment processor did not answer; the refund will be retried."))
        else:
            refund = (
                refunds.refund_duplicate_payment
                if obj.failure_code == refunds.DUPLICATE_PAYMENT
                else refunds.refund_charge
            )
            charge = refund(charge_id=obj.pk, operator=request.user)
    except errors.PaymentError as exc:
        return Outcome(False, exc.user_message)
    record_change(
        obj=charge,
        action="refunded",
        actor=request.user,
        reason=reason,
        before=before,
        after={"status": charge.status, "refunded_minor": charge.refunded_minor},
        now=now,
    )
    return Outcome(True)


def _charge_rows(queryset):
    for charge in queryset.select_related("user", "line", "package").order_by("pk"):
        yield [
            charge.pk,
            charge.created_at.isoformat(),
            str(charge.user),
            charge.line.iccid if charge.line else "",
            charge.package.name if charge.package else "",
            charge.purpose,
            plain_amount(charge.amount_minor, charge.currency),
            plain_amount(charge.refunded_minor, charge.currency),
            charge.currency,
            charge.status,
            charge.decline_kind,
            charge.failure_code,
            charge.failure_message,
            charge.payment_intent_id or "",
            charge.payment_method_summary,
        ]


@admin.register(Charge)
class ChargeAdmin(ReadableFieldsMixin, OperatorPermissionsMixin, admin.ModelAdmin):
    # Fits 1280 px beside the filters (docs/console.md, "Lists"): the amount carries its currency;
    # package, decline, failure and the PaymentIntent are on the charge's page.
    list_display = ["id", "created_at", "user", "line", "purpose", "amount_minor", "status"]
    list_filter = [
        "status",
        "purpose",
        "decline_kind",
        "currency",
        "package",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["=payment_intent_id", "user__email", "user__phone", "=line__iccid"]
    list_select_related = ["user", "line", "package"]
    raw_id_fields = ["user", "line", "renewal", "package"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    inlines = [ChangeHistoryInline]  # refunds by whom and why
    # Confirmed and recorded (console.actions); refund_in_full stays callable for scripts and tests.
    actions = [
        confirmed_action(
            name="refund_confirmed",
            description=_("Refund what is left of the selected payments"),
            permission="refund_charge",
            perform=_refund,
            warning=_("The money goes back to the customer's payment method. This cannot be undone."),
        ),
        csv_export_action(
            name="export_charges_csv",
            filename="charges.csv",
            header=[
                "id",
                _("created"),
                _("customer"),
                _("ICCID"),
                _("package"),
                _("purpose"),
                _("amount"),
                _("refunded"),
                _("currency"),
                _("status"),
                _("decline kind"),
                _("failure code"),
                _("failure reason"),
                _("PaymentIntent"),
                _("payment method"),
            ],
            rows=_charge_rows,
        ),
    ]
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
                refunds.refund_charge(charge_id=charge.pk, operator=request.user)
            except errors.PaymentError as exc:
                self.message_user(
                    request,
                    _("Charge %(id)s: %(reason)s") % {"id": charge.pk, "reason": exc.user_message},
                    messages.ERROR,
                )
            else:
                self.message_user(request, _("Charge %(id)s refunded.") % {"id": charge.pk}, messages.SUCCESS)
