"""Auto-renewal rules, renewal cycles and the operator's retry policy. The state machine is
in docs/invariants.md; transitions live in renewals/services/, guarded by the constraints here."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import CURRENCY_VALIDATOR

DEFAULT_RETRY_DELAYS_MINUTES = [60, 360, 1440, 4320]
# Card declines that retrying cannot fix: wait until the customer changes the method.
DEFAULT_HARD_DECLINE_CODES = [
    "lost_card",
    "stolen_card",
    "pickup_card",
    "restricted_card",
    "expired_card",
    "incorrect_number",
    "invalid_account",
    "card_not_supported",
    "currency_not_supported",
    "do_not_honor",
    "fraudulent",
]


def default_retry_delays() -> list[int]:
    return list(DEFAULT_RETRY_DELAYS_MINUTES)


def default_hard_decline_codes() -> list[str]:
    return list(DEFAULT_HARD_DECLINE_CODES)


class RetryPolicy(models.Model):
    """Operator-edited dunning policy; one row (`RetryPolicy.current()`)."""

    retry_delays_minutes = models.JSONField(_("delays between attempts (minutes)"), default=default_retry_delays)
    hard_decline_codes = models.JSONField(_("hard decline codes"), default=default_hard_decline_codes)
    grace_hours = models.PositiveIntegerField(_("grace before suspension (hours)"), default=0)
    minimum_renewal_minor = models.BigIntegerField(
        _("minimum renewal amount (minor units)"), default=0, validators=[MinValueValidator(0)]
    )
    alert_after_failures = models.PositiveSmallIntegerField(_("alert after failed attempts"), default=3)
    # A renewal waiting for 3-D Secure fails, and its line is suspended, once this has passed
    # without the customer paying. Not grace_hours: that one may be 0, which would cut a line the
    # tick after the bank asked for a confirmation the customer has not even read yet.
    authentication_hours = models.PositiveIntegerField(_("time to confirm a payment with the bank (hours)"), default=24)
    # bill_overage rules pay for data used beyond zero at this rate, with the next renewal.
    overage_price_per_gb_minor = models.BigIntegerField(
        _("overage price per GB (minor units)"), default=0, validators=[MinValueValidator(0)]
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("retry policy")
        verbose_name_plural = _("retry policy")

    def __str__(self) -> str:
        return str(_("Retry policy"))

    @classmethod
    def current(cls) -> "RetryPolicy":
        policy, _created = cls.objects.get_or_create(pk=1)
        return policy

    @property
    def max_failures(self) -> int:
        """Declines a renewal may take: the first attempt plus one per configured delay."""
        return len(self.retry_delays_minutes) + 1

    def delay_after_failure(self, failures: int) -> timedelta:
        """Wait after the `failures`-th decline (1-based); the last delay repeats if asked beyond."""
        delays = self.retry_delays_minutes or [60]
        return timedelta(minutes=int(delays[min(max(failures, 1), len(delays)) - 1]))


class RenewalRule(models.Model):
    class OveragePolicy(models.TextChoices):
        BLOCK = "block", _("Stop data until renewed")
        DEDUCT_FROM_NEXT = "deduct_from_next", _("Continue, deduct from the next package")
        BILL_OVERAGE = "bill_overage", _("Continue, bill the overage with the next renewal")

    line = models.OneToOneField(
        "accounts.Line", verbose_name=_("line"), related_name="renewal_rule", on_delete=models.CASCADE
    )
    enabled = models.BooleanField(_("auto-renewal on"), default=False)
    package = models.ForeignKey(
        "accounts.Package", verbose_name=_("package to buy"), related_name="+", on_delete=models.PROTECT
    )
    trigger_data_below_mb = models.PositiveIntegerField(_("when data remaining is at most (MB)"), null=True, blank=True)
    trigger_hours_before_expiry = models.PositiveIntegerField(
        _("when validity ends within (hours)"), null=True, blank=True
    )
    payment_method_id = models.CharField(
        _("payment method"), max_length=255, blank=True, help_text=_("Empty: the default method.")
    )
    overage_policy = models.CharField(
        _("when data runs out"), max_length=20, choices=OveragePolicy.choices, default=OveragePolicy.BLOCK
    )
    overage_cap_mb = models.PositiveIntegerField(_("overage cap (MB)"), null=True, blank=True)
    max_renewals_per_day = models.PositiveSmallIntegerField(
        _("at most renewals per 24 hours"), default=2, validators=[MinValueValidator(1)]
    )
    monthly_spend_cap_minor = models.BigIntegerField(
        _("monthly spend cap (minor units)"), null=True, blank=True, validators=[MinValueValidator(0)]
    )
    # The customer whose card this rule charges: the line's owner when the rule was set (docs/precedence.md).
    # A line given to someone else no longer matches it, and nothing of this rule charges the new owner.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("customer"),
        related_name="+",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("renewal rule")
        verbose_name_plural = _("renewal rules")
        constraints = [
            models.CheckConstraint(
                condition=Q(enabled=False)
                | Q(trigger_data_below_mb__isnull=False)
                | Q(trigger_hours_before_expiry__isnull=False),
                name="enabled_rule_has_trigger",
            ),
        ]
        indexes = [
            # The beat sweep's MAX(expiry window) over enabled rules reads one index entry, not the table.
            models.Index(
                fields=["trigger_hours_before_expiry"], condition=Q(enabled=True), name="rule_enabled_expiry_hours_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"rule for {self.line_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.owner_id is None and self.line_id is not None:
            self.owner_id = self.line.owner_id  # a new rule belongs to the line's owner of now
        super().save(*args, **kwargs)


class Renewal(models.Model):
    """One renewal cycle of one line, from due to done."""

    class Status(models.TextChoices):
        DUE = "due", _("Due")
        CHARGING = "charging", _("Charging")
        RETRY_SCHEDULED = "retry_scheduled", _("Retry scheduled")
        AWAITING_METHOD = "awaiting_method", _("Waiting for a new payment method")
        REQUIRES_ACTION = "requires_action", _("Needs the customer's action")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    OPEN = (Status.DUE, Status.CHARGING, Status.RETRY_SCHEDULED, Status.AWAITING_METHOD, Status.REQUIRES_ACTION)
    CLAIMABLE = (Status.DUE, Status.RETRY_SCHEDULED)

    line = models.ForeignKey("accounts.Line", verbose_name=_("line"), related_name="renewals", on_delete=models.PROTECT)
    rule = models.ForeignKey(
        RenewalRule, verbose_name=_("rule"), related_name="renewals", on_delete=models.SET_NULL, null=True, blank=True
    )
    package = models.ForeignKey(
        "accounts.Package", verbose_name=_("package"), related_name="+", on_delete=models.PROTECT
    )
    # Who pays this cycle, fixed when it opens (the rule's owner): no attempt is sent once the line's
    # owner is someone else (services.prepare_charge). Empty on cycles from before it was kept.
    payer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("customer"),
        related_name="+",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    amount_minor = models.BigIntegerField(_("amount (minor units)"), validators=[MinValueValidator(0)])
    currency = models.CharField(_("currency"), max_length=3, validators=[CURRENCY_VALIDATOR])
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.DUE)
    trigger = models.CharField(_("trigger"), max_length=40, blank=True)
    # Every charge attempt of this renewal, numbered 1.. (Charge.attempt); includes 3-D Secure attempts.
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # Declines that consume the retry schedule (soft, processor error, hard); 3-D Secure does not.
    failures = models.PositiveSmallIntegerField(_("failed attempts"), default=0)
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)
    # The cycle's terms, frozen when it opens (docs/money.md): every attempt charges amount_minor in
    # currency and applies package; amount_minor includes overage_fee_minor, the fee for the
    # overage_billed_bytes a bill_overage rule pays for with this renewal (cleared when applied).
    overage_billed_bytes = models.BigIntegerField(_("overage billed (bytes)"), default=0)
    overage_fee_minor = models.BigIntegerField(
        _("overage fee (minor units)"), default=0, db_default=0, validators=[MinValueValidator(0)]
    )
    # A failed renewal suspends its line once the policy's grace has passed; one waiting for the
    # customer's 3-D Secure fails and suspends at this time (the policy's authentication_hours).
    suspend_at = models.DateTimeField(_("suspend line at"), null=True, blank=True)
    line_suspended_at = models.DateTimeField(_("line suspended"), null=True, blank=True)
    # This renewal's payment brought a suspended line back (the customer is told "restored").
    resumed_line = models.BooleanField(_("resumed the line"), default=False)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_failure_code = models.CharField(_("last failure code"), max_length=100, blank=True)
    last_failure_message = models.CharField(_("last failure reason"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)

    class Meta:
        verbose_name = _("renewal")
        verbose_name_plural = _("renewals")
        ordering = ["-created_at", "-id"]
        constraints = [
            # Invariant 2: a database guarantee, not a Python check.
            models.UniqueConstraint(
                fields=["line"],
                condition=Q(status__in=["due", "charging", "retry_scheduled", "awaiting_method", "requires_action"]),
                name="one_open_renewal_per_line",
            ),
            models.CheckConstraint(condition=Q(amount_minor__gte=0), name="renewal_amount_not_negative"),
            models.CheckConstraint(
                condition=Q(overage_fee_minor__gte=0, overage_fee_minor__lte=models.F("amount_minor")),
                name="renewal_overage_fee_within_amount",
            ),
        ]
        indexes = [
            # The dispatcher's claim reads only claimable rows: its cost follows the due work, not the table.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["due", "retry_scheduled"]),
                name="renewal_claimable_idx",
            ),
            models.Index(fields=["line", "-created_at"]),
            models.Index(
                fields=["suspend_at"],
                condition=Q(status="failed", line_suspended_at__isnull=True),
                name="renewal_suspension_due_idx",
            ),
            models.Index(
                fields=["suspend_at"], condition=Q(status="requires_action"), name="renewal_authentication_due_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"renewal {self.pk} of line {self.line_id} ({self.status})"


class Alert(models.Model):
    """Something an operator should look at: a line renewing beyond its cap, a renewal failing
    again and again, a charge whose outcome could not be reconciled."""

    class Kind(models.TextChoices):
        RENEWAL_CAP_REACHED = "renewal_cap_reached", _("Renewals per 24 hours cap reached")
        SPEND_CAP_REACHED = "spend_cap_reached", _("Monthly spend cap reached")
        REPEATED_FAILURES = "repeated_failures", _("Renewal failing repeatedly")
        RENEWAL_FAILED = "renewal_failed", _("Renewal failed, line suspended")
        UNRECONCILED_CHARGE = "unreconciled_charge", _("Charge outcome unknown")
        PAID_AFTER_CLOSED = "paid_after_closed", _("Paid after its renewal had closed: refunded")

    kind = models.CharField(_("kind"), max_length=40, choices=Kind.choices)
    line = models.ForeignKey(
        "accounts.Line", verbose_name=_("line"), related_name="renewal_alerts", on_delete=models.CASCADE
    )
    renewal = models.ForeignKey(
        Renewal, verbose_name=_("renewal"), related_name="alerts", on_delete=models.CASCADE, null=True, blank=True
    )
    message = models.CharField(_("message"), max_length=500)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["-created_at", "-id"]
        constraints = [
            # One open alert per line and kind: a runaway line raises one alert, not one per sweep.
            models.UniqueConstraint(
                fields=["line", "kind"], condition=Q(resolved_at__isnull=True), name="one_open_alert_per_line_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} line {self.line_id}"
