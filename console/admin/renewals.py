"""The operator's view of renewals: rules, renewals (retry now, cancel), the retry policy, alerts.
Admin actions call the engine's services; nothing here changes state by itself."""

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts.history import acting, record_change
from console.actions import OperatorPermissionsMixin, Outcome, confirmed_action
from console.admin.display import ReadableFieldsMixin
from console.admin.history import ChangeHistoryInline, HistoryAdminMixin
from renewals import notifications
from renewals.models import Alert, Renewal, RenewalRule, RetryPolicy
from renewals.services import alerts, operator, rules


def pay_now_email_for(renewal: Renewal) -> str | None:
    """The email a "resend pay-now email" sends: the one the engine sent when the renewal reached
    the state it is in now (renewals.services), or None when there is nothing to pay."""
    if renewal.status in (Renewal.Status.REQUIRES_ACTION, Renewal.Status.AWAITING_METHOD):
        return notifications.NEEDS_ACTION
    if renewal.status == Renewal.Status.RETRY_SCHEDULED:
        return notifications.RETRY_SCHEDULED
    if renewal.status == Renewal.Status.FAILED:
        # Failed but still in the grace before suspension: the line works, so "suspended" would be untrue.
        return notifications.SUSPENDED if renewal.line_suspended_at else notifications.NEEDS_ACTION
    return None


def _renewal_state(renewal: Renewal) -> dict:
    return {"status": renewal.status, "next_attempt_at": renewal.next_attempt_at}


def _transition(service, action: str, refused):
    """A confirmed admin action that calls one engine service and writes the history row."""

    def perform(*, request, obj, reason, now) -> Outcome:
        before = _renewal_state(obj)
        if not service(renewal_id=obj.pk, now=now):
            return Outcome(False, refused)
        obj.refresh_from_db()
        record_change(
            obj=obj, action=action, actor=request.user, reason=reason, before=before, after=_renewal_state(obj), now=now
        )
        return Outcome(True)

    return perform


def _resend_pay_now(*, request, obj, reason, now) -> Outcome:
    kind = pay_now_email_for(obj)
    if kind is None or not notifications.send_notice_now(renewal=obj, kind=kind):
        return Outcome(False, _("Nothing to pay for this renewal, or the customer has no email address."))
    record_change(
        obj=obj, action="pay_now_email_sent", actor=request.user, reason=reason, after={"email": kind}, now=now
    )
    return Outcome(True)


@admin.register(RetryPolicy)
class RetryPolicyAdmin(ReadableFieldsMixin, HistoryAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "retry_delays_minutes", "grace_hours", "minimum_renewal_minor", "updated_at"]
    inlines = [ChangeHistoryInline]


def _turn_off_rule(*, request, obj, reason, now) -> Outcome:
    if not obj.enabled:
        return Outcome(False, _("Auto-renewal is already off."))
    # The engine's own switch (docs/invariants.md #3): unsent renewals are cancelled under the
    # rule's lock; the history row is written by the rule's save, attributed to the operator.
    with acting(request.user, action="turned_off", reason=reason):
        rules.turn_off_rule(rule=obj, now=now)
    return Outcome(True)


class EngineOwnedMixin:
    """A read-only form for rows the engine or the customer owns, for every operator (superusers
    too): a form would write back the values it was opened with and skip the services' checks,
    locks and history. Changes go through the confirmed actions."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RenewalRule)
class RenewalRuleAdmin(
    ReadableFieldsMixin, OperatorPermissionsMixin, EngineOwnedMixin, HistoryAdminMixin, admin.ModelAdmin
):
    """The customer sets the rule (renewals.services.rules.save_rule checks it); operators read it and
    may turn it off, which cancels what is not yet at the processor."""

    list_display = ["line", "line_owner", "enabled", "package", "trigger_data_below_mb", "overage_policy"]
    list_filter = ["enabled", "overage_policy", "package", ("updated_at", admin.DateFieldListFilter)]
    search_fields = ["=line__iccid", "line__owner__email", "line__owner__phone"]
    list_select_related = ["line__owner", "package"]
    raw_id_fields = ["line"]
    ordering = ["-updated_at", "-id"]
    inlines = [ChangeHistoryInline]
    actions = [
        confirmed_action(
            name="turn_off_rules_confirmed",
            description=_("Turn auto-renewal off"),
            permission="cancel_renewal",
            perform=_turn_off_rule,
            reason_required=True,
            warning=_("Renewals not yet sent to the processor are cancelled."),
        ),
    ]

    @admin.display(description=_("customer"), ordering="line__owner__email")
    def line_owner(self, rule):
        return rule.line.owner


@admin.register(Renewal)
class RenewalAdmin(ReadableFieldsMixin, OperatorPermissionsMixin, EngineOwnedMixin, admin.ModelAdmin):
    # Fits 1280 px beside the filters; the package, attempts and failure code are on its page.
    list_display = ["id", "line", "line_owner", "status", "amount_minor", "failures", "next_attempt_at"]
    list_filter = ["status", "package", ("created_at", admin.DateFieldListFilter), "currency"]
    search_fields = ["=line__iccid", "line__owner__email", "line__owner__phone", "=charges__payment_intent_id"]
    list_select_related = ["line__owner", "package"]
    raw_id_fields = ["line", "rule"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    inlines = [ChangeHistoryInline]
    # Confirmed and recorded (console.actions); retry_now / cancel stay callable for scripts and tests.
    actions = [
        confirmed_action(
            name="retry_now_confirmed",
            description=_("Retry now"),
            permission="retry_renewal",
            perform=_transition(
                operator.retry_now,
                "retry_now",
                _("Only a due, scheduled or waiting renewal, or the line's latest failed one, can be retried now."),
            ),
        ),
        confirmed_action(
            name="cancel_confirmed",
            description=_("Cancel the renewal"),
            permission="cancel_renewal",
            perform=_transition(
                operator.cancel_renewal, "cancelled", _("Already finished, or a charge is at the processor.")
            ),
        ),
        confirmed_action(
            name="resend_pay_now_email",
            description=_("Resend the pay-now email"),
            permission="email_customer",
            perform=_resend_pay_now,
        ),
    ]

    @admin.display(description=_("customer"), ordering="line__owner__email")
    def line_owner(self, renewal):
        return renewal.line.owner

    @admin.action(description=_("Retry now"))
    def retry_now(self, request, queryset):
        now = timezone.now()
        done = sum(operator.retry_now(renewal_id=pk, now=now) for pk in queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            ngettext(
                "%(count)d renewal will be charged at the next tick.",
                "%(count)d renewals will be charged at the next tick.",
                done,
            )
            % {"count": done},
            messages.SUCCESS,
        )

    @admin.action(description=_("Cancel"))
    def cancel(self, request, queryset):
        now = timezone.now()
        done = sum(operator.cancel_renewal(renewal_id=pk, now=now) for pk in queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            ngettext("%(count)d renewal cancelled.", "%(count)d renewals cancelled.", done) % {"count": done},
            messages.SUCCESS,
        )


def _resolve_alert(*, request, obj, reason, now) -> Outcome:
    if not alerts.resolve_alert(alert_id=obj.pk, now=now):
        return Outcome(False, _("Already resolved."))
    record_change(
        obj=obj,
        action="resolved",
        actor=request.user,
        reason=reason,
        before={"resolved_at": None},
        after={"resolved_at": now},
        now=now,
    )
    return Outcome(True)


@admin.register(Alert)
class AlertAdmin(ReadableFieldsMixin, OperatorPermissionsMixin, EngineOwnedMixin, admin.ModelAdmin):
    list_display = ["created_at", "kind", "line", "renewal", "message", "resolved_at"]
    list_filter = ["kind", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["line__iccid", "message"]
    list_select_related = ["line", "renewal"]
    raw_id_fields = ["line", "renewal"]
    inlines = [ChangeHistoryInline]
    # Confirmed and recorded like every operator action: who resolved it, when, and why.
    actions = [
        confirmed_action(
            name="resolve_confirmed",
            description=_("Mark resolved"),
            permission="view_operations",
            perform=_resolve_alert,
        ),
    ]
