"""Refunds: the operator's refund, refunds owed (money taken after its purpose closed), refunds whose
answer was lost, and a renewal's duplicate payment."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import gateways
from ..gateways import GatewayError

if TYPE_CHECKING:
    from accounts.models import User
from ..models import Charge
from .errors import PaymentError

logger = logging.getLogger(__name__)


def refund_charge(*, charge_id: int, amount_minor: int | None = None, operator: User | None = None) -> Charge:
    """Refund a succeeded charge, all of what is left by default. Under the charge's row lock, so
    two operators cannot refund the same money twice; capped at the amount not yet refunded.
    A refund whose answer is lost (a time-out) may have been made: the charge is marked in doubt
    and looked up at once, and again by the reconciliation sweep and the charge.refunded webhook,
    so the ledger never shows less refunded than the processor did (reconcile_refunds)."""
    lost: GatewayError | None = None
    with transaction.atomic():
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        if charge.status not in Charge.MONEY_TAKEN or not charge.payment_intent_id:
            raise PaymentError(_("Only a succeeded payment can be refunded."), code="not_refundable")
        if charge.refund_in_doubt_since is not None:
            # A new refund on top of one that may have gone through could refund twice.
            raise PaymentError(
                _("An earlier refund of this payment is still being checked; try again in a few minutes."),
                code="refund_in_doubt",
            )
        remaining = charge.amount_minor - charge.refunded_minor
        amount = remaining if amount_minor is None else int(amount_minor)
        if amount <= 0 or amount > remaining:
            raise PaymentError(_("Nothing left to refund, or more than what is left."), code="refund_amount")
        refunded_before = charge.refunded_minor
        try:
            gateways.refund_payment_intent(
                payment_intent_id=charge.payment_intent_id,
                amount_minor=amount,
                idempotency_key=f"refund-{charge.pk}-{charge.refunded_minor}-{amount}",
                charge_id=charge.pk,
            )
        except GatewayError as exc:
            if not exc.unknown:
                raise PaymentError(exc.user_message, code=exc.code) from exc
            # Committed with the lock still held: no second refund starts before this one is known.
            lost = exc
            charge.refund_in_doubt_since = timezone.now()
            charge.save(update_fields=["refund_in_doubt_since", "updated_at"])
        else:
            charge.refunded_minor += amount
            if charge.refunded_minor == charge.amount_minor:
                charge.status = Charge.Status.REFUNDED
            charge.save()
    if lost is not None:
        logger.warning("charge_refund_outcome_unknown charge=%s amount=%s code=%s", charge.pk, amount, lost.code)
        charge = reconcile_refunds(charge_id=charge.pk)
        if charge.refund_in_doubt_since is None and charge.refunded_minor >= refunded_before + amount:
            return charge  # it went through after all
        raise PaymentError(
            _("The payment processor did not answer; the refund will be checked and shown here."), code=lost.code
        )
    logger.info(
        "charge_refunded charge=%s amount=%s refunded_total=%s status=%s operator=%s",
        charge.pk,
        amount,
        charge.refunded_minor,
        charge.status,
        getattr(operator, "pk", None),
    )
    return charge


# Why a charge is refund_due (renewals.services and _refund_paid_after_closed write these; a new
# eSIM never provisioned: recording's "not_provisioned", provisioning's "esim_not_provisioned").
REFUND_DUE_CODES = ("paid_after_closed", "line_terminated", "not_provisioned", "esim_not_provisioned")


def reconcile_refunds(*, charge_id: int, now: datetime | None = None) -> Charge:
    """Make the ledger's refunded amount the processor's (refunds are listed by their intent; our
    own metadata and idempotency keys name them): after a refund request whose answer was lost,
    from the sweep, or from a charge.refunded webhook. A lost refund stays in doubt (no new refund
    of the charge may start) until the processor shows it, or until it can no longer be in flight
    (PAYMENTS_RECONCILE_AFTER); and if the processor cannot be asked."""
    now = now or timezone.now()
    charge = Charge.objects.get(pk=charge_id)
    if not charge.payment_intent_id or charge.status not in Charge.MONEY_TAKEN:
        return charge
    try:
        total = gateways.refunded_total(charge.payment_intent_id)
    except GatewayError:
        logger.warning("charge_refund_reconcile_unreachable charge=%s", charge.pk)
        return charge
    with transaction.atomic():
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        before = (charge.refunded_minor, charge.status)
        found = total > charge.refunded_minor
        charge.refunded_minor = min(total, charge.amount_minor)
        # Money that was never ours to keep (paid after its cycle closed, or for a terminated line)
        # goes back to refund_due if a refund failed, and the sweep sends it again; never succeeded,
        # which would be a second success for its renewal (one_successful_charge_per_renewal).
        short = Charge.Status.REFUND_DUE if charge.failure_code in REFUND_DUE_CODES else Charge.Status.SUCCEEDED
        charge.status = Charge.Status.REFUNDED if charge.refunded_minor == charge.amount_minor else short
        if found or (
            charge.refund_in_doubt_since and charge.refund_in_doubt_since < now - settings.PAYMENTS_RECONCILE_AFTER
        ):
            charge.refund_in_doubt_since = None
        charge.save(update_fields=["refunded_minor", "status", "refund_in_doubt_since", "updated_at"])
    if before != (charge.refunded_minor, charge.status):
        logger.warning(
            "charge_refunds_reconciled charge=%s refunded=%s->%s status=%s->%s",
            charge.pk,
            before[0],
            charge.refunded_minor,
            before[1],
            charge.status,
        )
    return charge


def reconcile_refunds_in_doubt(*, limit: int = 100) -> list[int]:
    """The sweep's part: every refund whose answer was lost is looked up (oldest first)."""
    ids = list(
        Charge.objects.filter(refund_in_doubt_since__isnull=False)
        .order_by("refund_in_doubt_since")
        .values_list("id", flat=True)[:limit]
    )
    return [charge_id for charge_id in ids if reconcile_refunds(charge_id=charge_id).refund_in_doubt_since is None]


def refund_due_charge(*, charge_id: int) -> Charge:
    """Give back money taken for a charge whose purpose no longer wanted it (`refund_due`: a
    renewal paid after its cycle had closed). Exactly once: under the charge's row lock, what the
    processor already refunded of the intent is read first, and the refund's key is the charge's.
    A processor that does not answer leaves it `refund_due` for the next sweep."""
    with transaction.atomic():
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        if charge.status != Charge.Status.REFUND_DUE:
            return charge
        if not charge.payment_intent_id:
            # Money taken names its PaymentIntent (a succeeded outcome reads one). Without it, the
            # processor's list of refunds would be the whole account's: never guessed.
            logger.error("refund_due_without_payment_intent charge=%s", charge.pk)
            return charge
        try:
            already = gateways.refunded_total(charge.payment_intent_id)
            if already < charge.amount_minor:
                # One key per stay in refund_due (a retry after a lost answer reuses it; a refund the
                # processor failed, which reconcile_refunds put back here, gets a new one).
                stay = charge.updated_at.strftime("%Y%m%d%H%M%S%f")
                gateways.refund_payment_intent(
                    payment_intent_id=charge.payment_intent_id,
                    amount_minor=charge.amount_minor - already,
                    idempotency_key=f"refund-due-{charge.pk}-{stay}",
                    charge_id=charge.pk,
                )
        except GatewayError as exc:
            logger.warning("refund_due_not_sent charge=%s pi=%s code=%s", charge.pk, charge.payment_intent_id, exc.code)
            return charge
        charge.refunded_minor = charge.amount_minor
        charge.status = Charge.Status.REFUNDED
        charge.save()
    logger.info(
        "charge_refunded charge=%s amount=%s status=%s reason=%s",
        charge.pk,
        charge.amount_minor,
        charge.status,
        charge.failure_code,
    )
    return charge


def refund_due_charges(*, limit: int = 100) -> list[int]:
    """The sweep behind each refund's own after-commit call: every charge still `refund_due`."""
    ids = list(
        Charge.objects.filter(status=Charge.Status.REFUND_DUE).order_by("id").values_list("id", flat=True)[:limit]
    )
    return [charge_id for charge_id in ids if refund_due_charge(charge_id=charge_id).status == Charge.Status.REFUNDED]


DUPLICATE_PAYMENT = "duplicate_payment"  # renewals.services._record_success: money taken twice for one renewal


def refund_duplicate_payment(*, charge_id: int, operator: User | None = None) -> Charge:
    """Refund a renewal's second payment. The engine keeps it on the ledger as failed with the code
    `duplicate_payment` (the one-success-per-renewal constraint), but the processor holds the money:
    give all of it back, under the charge's row lock like refund_charge. The status stays failed
    (that constraint); `refunded_minor` says the money went back."""
    with transaction.atomic():
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        if (
            charge.status != Charge.Status.FAILED
            or charge.failure_code != DUPLICATE_PAYMENT
            or not charge.payment_intent_id
        ):
            raise PaymentError(_("Only a succeeded payment can be refunded."), code="not_refundable")
        amount = charge.amount_minor - charge.refunded_minor
        if amount <= 0:
            raise PaymentError(_("Nothing left to refund, or more than what is left."), code="refund_amount")
        try:
            gateways.refund_payment_intent(
                payment_intent_id=charge.payment_intent_id,
                amount_minor=amount,
                idempotency_key=f"refund-{charge.pk}-{charge.refunded_minor}-{amount}",
                charge_id=charge.pk,
            )
        except GatewayError as exc:
            raise PaymentError(exc.user_message, code=exc.code) from exc
        charge.refunded_minor += amount
        charge.save(update_fields=["refunded_minor", "updated_at"])
    logger.info(
        "duplicate_payment_refunded charge=%s amount=%s renewal=%s operator=%s",
        charge.pk,
        amount,
        charge.renewal_id,
        getattr(operator, "pk", None),
    )
    return charge
