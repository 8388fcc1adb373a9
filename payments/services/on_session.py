"""On-session payments (a purchase, or a renewal's pay-now started by renewals.services.pay_now):
the `Charge` row is committed before the processor is called; 3-D Secure completion and the
reconciliation of purchases whose outcome is unknown."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NoReturn

from django.conf import settings
from django.db import IntegrityError
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Line, Package, User

from .. import gateways
from ..gateways import ChargeOutcome, GatewayError, OutcomeKind
from ..models import Charge, next_authentication_check
from . import methods, recording
from .errors import NotPayable

if TYPE_CHECKING:
    from djstripe.models import PaymentMethod

logger = logging.getLogger(__name__)


def _new_charge(
    *,
    user: User,
    line: Line | None,
    package: Package | None,
    amount_minor: int,
    currency: str,
    purpose: str,
    method: PaymentMethod,
    now: datetime,
    idempotency_key: str = "",
) -> Charge:
    # Committed before the processor is called (autocommit outside a transaction): an attempt
    # can never exist at Stripe without the row that explains it.
    return Charge.objects.create(
        user=user,
        line=line,
        package=package,
        purpose=purpose,
        amount_minor=amount_minor,
        currency=currency,
        status=Charge.Status.PENDING,
        on_session=True,
        idempotency_key=idempotency_key or f"{purpose}-{uuid.uuid4().hex}",
        payment_method_id=method.id,
        payment_method_summary=gateways.payment_method_summary(method)[:100],
        sent_at=now,
    )


def purchase_package(
    *, user: User, line: Line, package: Package, payment_method_id: str, now: datetime | None = None
) -> Charge:
    """Buy a package for a line, on-session. Returns the charge: succeeded (package applied),
    requires_action (the browser must authenticate with the charge's PaymentIntent), failed
    (reason on the charge, nothing applied) or pending (outcome unknown: reconciled later)."""
    now = now or timezone.now()
    if line.owner_id != user.pk:
        raise NotPayable(_("Line not found."), code="not_found")
    if line.status == Line.Status.TERMINATED:
        raise NotPayable(_("This line is terminated; no package can be bought for it."), code="line_terminated")
    if not package.active:
        raise NotPayable(_("This package is no longer on sale."), code="package_inactive")
    method = methods.own_method(user, payment_method_id)
    charge = _new_charge(
        user=user,
        line=line,
        package=package,
        amount_minor=package.price_minor,
        currency=package.currency,
        purpose=Charge.Purpose.PURCHASE,
        method=method,
        now=now,
    )
    logger.info("purchase_started charge=%s user=%s line=%s package=%s", charge.pk, user.pk, line.pk, package.pk)
    outcome = gateways.charge_on_session(charge=charge, customer_id=method.customer_id, payment_method_id=method.id)
    if outcome.kind is OutcomeKind.THROTTLED:
        # Never sent: no attempt to keep on the ledger.
        Charge.objects.filter(pk=charge.pk, status=Charge.Status.PENDING, payment_intent_id__isnull=True).delete()
        processor_busy(charge, outcome)
    return recording.record_outcome(charge_id=charge.pk, outcome=outcome)


def purchase_new_line(
    *, user: User, package: Package, payment_method_id: str, submission: str = "", now: datetime | None = None
) -> Charge:
    """Buy a package for an eSIM that does not exist yet, on-session: a purchase with no line.
    Once paid, the app registered in payments.outcomes (provisioning) orders the profile in the
    same transaction as the payment's success (docs/provisioning.md). Returns the charge as
    purchase_package does. `submission` names one buy form shown: the same form sent twice (a
    double click, two requests racing) is the same purchase, and the second gets the first's
    charge back (the charge's unique idempotency key decides, not a check in Python)."""
    now = now or timezone.now()
    if not package.active:
        raise NotPayable(_("This package is no longer on sale."), code="package_inactive")
    key = f"purchase-new-{user.pk}-{submission}" if submission else ""
    if key and (existing := Charge.objects.filter(idempotency_key=key, user=user).first()) is not None:
        logger.info("new_line_purchase_resubmitted charge=%s user=%s", existing.pk, user.pk)
        return existing
    method = methods.own_method(user, payment_method_id)
    try:
        charge = _new_charge(
            user=user,
            line=None,
            package=package,
            amount_minor=package.price_minor,
            currency=package.currency,
            purpose=Charge.Purpose.PURCHASE,
            method=method,
            now=now,
            idempotency_key=key,
        )
    except IntegrityError:
        existing = Charge.objects.filter(idempotency_key=key, user=user).first()
        if not key or existing is None:
            raise
        logger.info("new_line_purchase_resubmitted charge=%s user=%s", existing.pk, user.pk)
        return existing
    logger.info("new_line_purchase_started charge=%s user=%s package=%s", charge.pk, user.pk, package.pk)
    outcome = gateways.charge_on_session(charge=charge, customer_id=method.customer_id, payment_method_id=method.id)
    if outcome.kind is OutcomeKind.THROTTLED:
        Charge.objects.filter(pk=charge.pk, status=Charge.Status.PENDING, payment_intent_id__isnull=True).delete()
        processor_busy(charge, outcome)
    return recording.record_outcome(charge_id=charge.pk, outcome=outcome)


def processor_busy(charge: Charge, outcome: ChargeOutcome) -> NoReturn:
    logger.warning("payment_not_sent charge=%s renewal=%s code=%s", charge.pk, charge.renewal_id, outcome.failure_code)
    raise NotPayable(outcome.failure_message, code=outcome.failure_code)


def withdraw_open_payment(charge: Charge) -> Charge:
    """Withdraw an intent waiting for authentication that a new payment replaces, and return the
    charge as recorded. Cancel first, then read the intent back: the customer may complete it in
    another tab at any moment, and only the processor's state after our cancel says who won.
    `succeeded`: they paid, and that is recorded; `failed` (superseded): the intent can no longer
    take money; still `requires_action` or `pending`: not withdrawn (the cancel did not get
    through, or a payment is settling), so no new payment may start."""
    intent_id = charge.payment_intent_id
    try:
        if not intent_id:
            found = gateways.find_payment_intent_for_charge(charge)
            intent_id = gateways._get(found, "id") if found is not None else None
        if intent_id:
            gateways.cancel_payment_intent(intent_id)  # refused once paid: the read below says so
            outcome = gateways.outcome_from_payment_intent(gateways.retrieve_payment_intent(intent_id))
        else:
            outcome = ChargeOutcome(OutcomeKind.SOFT_DECLINE, None, payment_intent_status="canceled")
    except GatewayError as exc:
        logger.warning("payment_not_withdrawn charge=%s pi=%s code=%s", charge.pk, intent_id, exc.code)
        return Charge.objects.get(pk=charge.pk)
    if outcome.kind in (OutcomeKind.AUTHENTICATION_REQUIRED, OutcomeKind.PENDING, OutcomeKind.PROCESSOR_ERROR):
        logger.warning(
            "payment_not_withdrawn charge=%s pi=%s status=%s", charge.pk, intent_id, outcome.payment_intent_status
        )
        return Charge.objects.get(pk=charge.pk)
    if outcome.kind is not OutcomeKind.SUCCEEDED:
        outcome = ChargeOutcome(OutcomeKind.SOFT_DECLINE, intent_id, "superseded", "Replaced by a new payment.")
    logger.info("payment_withdrawn charge=%s pi=%s kind=%s", charge.pk, intent_id, outcome.kind.value)
    return recording.record_outcome(charge_id=charge.pk, outcome=outcome)


def complete_authentication(*, user: User, charge_id: int) -> Charge:
    """After the browser's 3-D Secure step: read the intent back from Stripe and record it. The
    webhook may have done it already; recording is idempotent."""
    charge = Charge.objects.filter(pk=charge_id, user=user).first()
    if charge is None:
        raise NotPayable(_("Payment not found."), code="not_found")
    return reconcile(charge=charge)


def reconcile(*, charge: Charge, not_found_means_not_sent: bool = False) -> Charge:
    """Ask Stripe what became of a charge that is not settled, and record it. Unknown stays
    pending (and is asked again later); never re-sent. Only once a request can no longer be in
    flight (`not_found_means_not_sent`) does a missing PaymentIntent close the charge."""
    if charge.status not in (Charge.Status.PENDING, Charge.Status.REQUIRES_ACTION):
        return charge
    try:
        intent = gateways.find_payment_intent_for_charge(charge)
    except GatewayError:
        logger.warning("charge_reconcile_unreachable charge=%s", charge.pk)
        return charge
    if intent is None:
        if not_found_means_not_sent and charge.status == Charge.Status.PENDING:
            logger.warning("charge_reconciled_not_sent charge=%s", charge.pk)
            return recording.record_outcome(
                charge_id=charge.pk,
                outcome=ChargeOutcome(
                    OutcomeKind.SOFT_DECLINE, None, "not_sent", "The payment processor never received this payment."
                ),
            )
        return charge
    return recording.record_outcome(charge_id=charge.pk, outcome=gateways.outcome_from_payment_intent(intent))


def reconcile_stale_purchases(*, now: datetime | None = None) -> list[int]:
    """Purchases left pending (a time-out, a crash between Stripe's answer and our commit),
    older than PAYMENTS_RECONCILE_AFTER: look each up and settle it. Renewal charges are the
    renewals dispatcher's (renewals.services.reconcile_charge). Returns the ids settled."""
    now = now or timezone.now()
    stale = Charge.objects.filter(
        renewal__isnull=True, status=Charge.Status.PENDING, sent_at__lt=now - settings.PAYMENTS_RECONCILE_AFTER
    ).order_by("sent_at")[:100]
    settled = []
    for charge in stale:
        if reconcile(charge=charge, not_found_means_not_sent=True).status != Charge.Status.PENDING:
            settled.append(charge.pk)
    # Purchases waiting for 3-D Secure, on their own schedule (Charge.next_check_at), earliest due
    # first: the customer may have paid at the bank with neither the return page nor the webhook
    # reaching us. Rows from before next_check_at existed are due after PAYMENTS_RECONCILE_AFTER.
    waiting = (
        Charge.objects.filter(renewal__isnull=True, status=Charge.Status.REQUIRES_ACTION)
        .filter(
            Q(next_check_at__lte=now)
            | Q(next_check_at__isnull=True, sent_at__lt=now - settings.PAYMENTS_RECONCILE_AFTER),
        )
        .order_by(F("next_check_at").asc(nulls_first=True), "sent_at", "id")[:100]
    )
    for charge in waiting:
        if _check_authentication(charge=charge, now=now).status != Charge.Status.REQUIRES_ACTION:
            settled.append(charge.pk)
    return settled


def _authentication_window() -> timedelta:
    return getattr(settings, "PAYMENTS_AUTHENTICATION_WINDOW", timedelta(hours=24))


def _check_authentication(*, charge: Charge, now: datetime) -> Charge:
    """One look-up of a purchase waiting for 3-D Secure. Paid: recorded through record_outcome
    (idempotent: the return page or the webhook may record it too). Anything else: left waiting and
    looked up again later, until the authentication window is over; then the intent is withdrawn
    (cancel first, read back: a payment completed meanwhile still wins), so an abandoned purchase is
    not looked up for ever and cannot take money long after the customer was told it failed."""
    expired = charge.sent_at is not None and charge.sent_at < now - _authentication_window()
    try:
        intent = gateways.find_payment_intent_for_charge(charge)
        intent_id = gateways._get(intent, "id") if intent is not None else None
        if expired and intent_id:
            gateways.cancel_payment_intent(intent_id)  # refused once paid: the read below says so
            intent = gateways.retrieve_payment_intent(intent_id)
    except GatewayError as exc:
        logger.warning("purchase_authentication_check_unreachable charge=%s code=%s", charge.pk, exc.code)
        return charge  # next_check_at unchanged: due again at the next sweep
    outcome = gateways.outcome_from_payment_intent(intent) if intent is not None else None
    if outcome is not None and outcome.kind is OutcomeKind.SUCCEEDED:
        logger.warning("purchase_authentication_reconciled charge=%s pi=%s", charge.pk, outcome.payment_intent_id)
        return recording.record_outcome(charge_id=charge.pk, outcome=outcome, now=now)
    if expired and (
        outcome is None
        or outcome.kind not in (OutcomeKind.AUTHENTICATION_REQUIRED, OutcomeKind.PENDING, OutcomeKind.PROCESSOR_ERROR)
    ):
        logger.info("purchase_authentication_expired charge=%s pi=%s", charge.pk, intent_id)
        return recording.record_outcome(
            charge_id=charge.pk,
            now=now,
            outcome=ChargeOutcome(
                OutcomeKind.SOFT_DECLINE,
                intent_id,
                "authentication_timeout",
                "The payment was not confirmed with the bank in time.",
            ),
        )
    Charge.objects.filter(pk=charge.pk, status=Charge.Status.REQUIRES_ACTION).update(
        next_check_at=next_authentication_check(sent_at=charge.sent_at, now=now, cap=settings.PAYMENTS_RECONCILE_AFTER)
    )
    return Charge.objects.get(pk=charge.pk)
