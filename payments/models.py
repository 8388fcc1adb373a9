"""Our ledger of every attempt to take money. Stripe's own objects (customers, payment
methods, PaymentIntents) are mirrored by dj-stripe; a `Charge` is written before the
processor is called, so no attempt can happen without a row that explains it."""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import CURRENCY_VALIDATOR


class Charge(models.Model):
    class Purpose(models.TextChoices):
        PURCHASE = "purchase", _("Purchase")
        RENEWAL = "renewal", _("Auto-renewal")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        REQUIRES_ACTION = "requires_action", _("Needs your action")
        REFUNDED = "refunded", _("Refunded")
        # Money taken for a charge whose purpose no longer wanted it (a renewal cycle closed before
        # the success arrived): refunded automatically, with an operator alert (docs/money.md).
        REFUND_DUE = "refund_due", _("Refund due")

    class DeclineKind(models.TextChoices):
        SOFT = "soft", _("Soft decline")
        HARD = "hard", _("Hard decline")
        AUTHENTICATION_REQUIRED = "authentication_required", _("Authentication required")
        PROCESSOR_ERROR = "processor_error", _("Processor error")

    # Statuses in which money was taken. A renewal keeps at most one charge's money: one `succeeded`
    # charge (docs/invariants.md #1); any other that took money is refunded.
    MONEY_TAKEN = (Status.SUCCEEDED, Status.REFUNDED)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("customer"), related_name="charges", on_delete=models.PROTECT
    )
    line = models.ForeignKey(
        "accounts.Line", verbose_name=_("line"), related_name="charges", on_delete=models.PROTECT, null=True, blank=True
    )
    package = models.ForeignKey(
        "accounts.Package", verbose_name=_("package"), related_name="+", on_delete=models.PROTECT, null=True, blank=True
    )
    renewal = models.ForeignKey(
        "renewals.Renewal",
        verbose_name=_("renewal"),
        related_name="charges",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    attempt = models.PositiveSmallIntegerField(_("attempt"), null=True, blank=True)
    # The customer at the browser (a purchase, a renewal's pay-now): its decline is shown to them
    # and never moves a renewal's retry cycle.
    on_session = models.BooleanField(_("paid by the customer at the browser"), default=False, db_default=False)
    purpose = models.CharField(_("purpose"), max_length=20, choices=Purpose.choices)
    amount_minor = models.BigIntegerField(_("amount (minor units)"), validators=[MinValueValidator(0)])
    currency = models.CharField(_("currency"), max_length=3, validators=[CURRENCY_VALIDATOR])
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PENDING)
    idempotency_key = models.CharField(_("idempotency key"), max_length=100, unique=True)
    payment_intent_id = models.CharField(_("PaymentIntent"), max_length=255, unique=True, null=True, blank=True)
    payment_method_id = models.CharField(_("payment method id"), max_length=255, blank=True)
    payment_method_summary = models.CharField(_("payment method"), max_length=100, blank=True)
    failure_code = models.CharField(_("failure code"), max_length=100, blank=True)
    failure_message = models.CharField(_("failure reason"), max_length=500, blank=True)
    decline_kind = models.CharField(_("decline kind"), max_length=30, choices=DeclineKind.choices, blank=True)
    refunded_minor = models.BigIntegerField(_("refunded (minor units)"), default=0, validators=[MinValueValidator(0)])
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    sent_at = models.DateTimeField(_("sent to processor"), null=True, blank=True)
    settled_at = models.DateTimeField(_("settled"), null=True, blank=True)
    # A pending attempt's next look-up at the processor, by its payment type (a card minutes after
    # the attempt, a SEPA debit daily while it settles): reconciliation takes the earliest due
    # first, so days of debits in flight never hide a card attempt that timed out. A charge waiting
    # for 3-D Secure has one too (next_authentication_check): the customer may pay at the bank and
    # never come back, and the webhook may be lost.
    next_check_at = models.DateTimeField(_("next check"), null=True, blank=True)
    # A refund request whose answer was lost (a time-out): the processor may have made it. Until it
    # is looked up (services.reconcile_refunds), refunded_minor may be short of the truth.
    refund_in_doubt_since = models.DateTimeField(_("refund outcome unknown since"), null=True, blank=True)

    class Meta:
        verbose_name = _("charge")
        verbose_name_plural = _("charges")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            models.Index(fields=["status", "created_at"]),
            models.Index(
                fields=["next_check_at"],
                condition=Q(status__in=["pending", "requires_action"]),
                name="charge_open_next_check_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["renewal"],
                condition=Q(status="succeeded"),
                name="one_successful_charge_per_renewal",
            ),
            models.UniqueConstraint(fields=["renewal", "attempt"], name="one_charge_per_renewal_attempt"),
            models.CheckConstraint(condition=Q(amount_minor__gte=0), name="charge_amount_not_negative"),
            models.CheckConstraint(
                condition=Q(refunded_minor__lte=models.F("amount_minor")), name="charge_refund_within_amount"
            ),
        ]

    def __str__(self) -> str:
        return f"charge {self.pk} {self.amount_minor} {self.currency} {self.status}"


# A charge waiting for 3-D Secure is looked up at the processor a few minutes after it was sent,
# then less often, never more than `cap` (the reconciliation window) apart: a payment the customer
# completed at the bank is recorded within that window even if neither the return page nor the
# webhook reaches us (docs/money.md).
AUTHENTICATION_FIRST_CHECK = timedelta(minutes=2)


def next_authentication_check(*, sent_at: datetime | None, now: datetime, cap: timedelta) -> datetime:
    waited = now - sent_at if sent_at else timedelta(0)
    return now + min(max(waited, AUTHENTICATION_FIRST_CHECK), cap)
