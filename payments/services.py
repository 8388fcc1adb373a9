"""Every write of the payments app: binding and removing payment methods, on-session payments
(purchases and the renewals' pay-now) and recording what the processor said. Stripe is only
reached through payments.gateways; a `Charge` row is committed before any charge call.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Line, Package
from accounts.services import LineTerminated, apply_package

from . import gateways, hooks, outcomes
from .gateways import ChargeOutcome, GatewayError, OutcomeKind
from .models import Charge, next_authentication_check

logger = logging.getLogger(__name__)

METHOD_TYPES = ("card", "sepa_debit", "paypal")


class PaymentError(Exception):
    """A domain error with a message safe to show the customer."""

    def __init__(self, message: str, *, code: str = ""):
        super().__init__(message)
        self.user_message = message
        self.code = code


class MethodUnavailable(PaymentError):
    pass


class BindingFailed(PaymentError):
    pass


class PaymentMethodNotFound(PaymentError):
    pass


class ReplacementRequired(PaymentError):
    def __init__(self, message: str, *, rules):
        super().__init__(message, code="replacement_required")
        self.rules = rules


class NotPayable(PaymentError):
    pass


# --- payment methods -------------------------------------------------------------------------

def enabled_method_types() -> list[str]:
    types = ["card", "sepa_debit"]
    if settings.STRIPE_PAYPAL_ENABLED:
        types.append("paypal")
    return types


@dataclass(frozen=True)
class BindingStart:
    setup_intent_id: str
    client_secret: str
    method_type: str


def start_binding(*, user, method_type: str) -> BindingStart:
    """A fresh SetupIntent the browser confirms with Stripe.js; the card number or IBAN goes
    from the browser to Stripe, never to us."""
    if method_type not in enabled_method_types():
        raise MethodUnavailable(_("This payment method is not available."), code="method_unavailable")
    try:
        customer = gateways.ensure_customer(user)
        intent = gateways.create_setup_intent(customer_id=customer.id, method_type=method_type)
    except GatewayError as exc:
        logger.warning("binding_start_failed user=%s type=%s code=%s", user.pk, method_type, exc.code)
        if method_type == "paypal":
            raise MethodUnavailable(
                _("PayPal is not available from the payment processor right now. Nothing was saved."), code=exc.code
            ) from exc
        raise BindingFailed(exc.user_message, code=exc.code) from exc
    logger.info("binding_started user=%s type=%s setup_intent=%s", user.pk, method_type, intent["id"])
    return BindingStart(setup_intent_id=intent["id"], client_secret=intent["client_secret"], method_type=method_type)


def _setup_error_message(intent) -> str:
    error = gateways._get(intent, "last_setup_error")
    code = gateways._get(error, "code") or ""
    if code == "card_declined" or intent["status"] == "canceled":
        return _("Your card was declined. Nothing was saved; please use another card.")
    return _("The payment method could not be set up. Nothing was saved.")


def confirmed_setup_intent(*, user, setup_intent_id: str, customer_id: str):
    """The customer's SetupIntent as Stripe reports it, read back with our secret key: the browser
    only tells us which intent, never which method. BindingFailed if it is another customer's or
    not confirmed."""
    try:
        intent = gateways.retrieve_setup_intent(setup_intent_id)
    except GatewayError as exc:
        logger.warning("binding_finish_failed user=%s setup_intent=%s code=%s", user.pk, setup_intent_id, exc.code)
        raise BindingFailed(exc.user_message if exc.unknown else _("The payment method could not be set up. Nothing was saved."),
                            code=exc.code) from exc
    if gateways._get(intent, "customer") != customer_id:
        logger.warning("binding_foreign_intent user=%s setup_intent=%s", user.pk, setup_intent_id)
        raise BindingFailed(_("The payment method could not be set up. Nothing was saved."), code="foreign_setup_intent")
    if intent["status"] != "succeeded":
        logger.info("binding_declined user=%s setup_intent=%s status=%s", user.pk, setup_intent_id, intent["status"])
        raise BindingFailed(_setup_error_message(intent), code="setup_failed")
    return intent


def approved_method_summary(*, user, setup_intent_id: str) -> str:
    """What the customer approved at a redirect-based setup ('PayPal (a@example.com)'), read from
    Stripe without changing anything. BindingFailed as confirmed_setup_intent."""
    customer = gateways.customer_for_user(user)
    if customer is None:
        raise BindingFailed(_("The payment method could not be set up. Nothing was saved."), code="no_customer")
    intent = confirmed_setup_intent(user=user, setup_intent_id=setup_intent_id, customer_id=customer.id)
    payment_method = gateways._get(intent, "payment_method")
    if isinstance(payment_method, str):
        try:
            payment_method = gateways.retrieve_payment_method(payment_method)
        except GatewayError as exc:
            raise BindingFailed(exc.user_message, code=exc.code) from exc
    return gateways.payment_method_summary(payment_method)


def finish_binding(*, user, setup_intent_id: str, make_default: bool = False):
    """Attach the method of a SetupIntent the browser confirmed (confirmed_setup_intent). The page
    also reports a declined confirmation here: the intent is then cancelled at Stripe, so a card
    tester cannot confirm it again with the next number (each report counts against the
    payment-method rate limit; a new intent is needed, and counted, for the next try)."""
    customer = gateways.ensure_customer(user)
    try:
        intent = confirmed_setup_intent(user=user, setup_intent_id=setup_intent_id, customer_id=customer.id)
    except BindingFailed as exc:
        if exc.code == "setup_failed":
            try:
                gateways.cancel_setup_intent(setup_intent_id)
            except GatewayError as cancel_exc:
                logger.warning("binding_cancel_failed user=%s setup_intent=%s code=%s", user.pk, setup_intent_id, cancel_exc.code)
        raise
    payment_method_id = gateways._get(intent, "payment_method")
    payment_method_id = gateways._get(payment_method_id, "id", payment_method_id)
    try:
        method = gateways.attach_payment_method(customer_id=customer.id, payment_method_id=payment_method_id)
    except GatewayError as exc:
        if exc.unknown:
            # The attach may have happened at Stripe: undo it so nothing is half-saved.
            try:
                gateways.detach_payment_method(payment_method_id)
            except GatewayError:
                logger.error("binding_rollback_failed user=%s pm=%s", user.pk, payment_method_id)
        raise BindingFailed(exc.user_message, code=exc.code) from exc
    if make_default or not gateways.default_payment_method_id(user):
        try:
            _set_default(user=user, customer_id=customer.id, payment_method_id=method.id)
        except GatewayError as exc:
            # Nothing half-saved: a method the customer asked to make default is not left attached
            # as a non-default one.
            try:
                gateways.detach_payment_method(method.id)
            except GatewayError:
                logger.error("binding_rollback_failed user=%s pm=%s", user.pk, method.id)
            raise BindingFailed(exc.user_message, code=exc.code) from exc
    logger.info("payment_method_bound user=%s pm=%s type=%s", user.pk, method.id, method.type)
    return method


def own_method(user, payment_method_id: str):
    from djstripe.models import PaymentMethod

    customer = gateways.customer_for_user(user)
    # The id comes from the URL: PostgreSQL refuses a NUL in a query (a 500), and no Stripe id has one.
    usable = customer and payment_method_id and "\x00" not in payment_method_id
    method = PaymentMethod.objects.filter(id=payment_method_id, customer=customer).first() if usable else None
    if method is None:
        logger.warning("payment_method_not_found user=%s pm=%r", user.pk, (payment_method_id or "")[:64])
        raise PaymentMethodNotFound(_("Payment method not found."), code="not_found")
    return method


def _set_default(*, user, customer_id: str, payment_method_id: str | None) -> None:
    previous = gateways.default_payment_method_id(user)
    gateways.set_default_payment_method(customer_id=customer_id, payment_method_id=payment_method_id)
    logger.info("default_payment_method_set user=%s pm=%s previous=%s", user.pk, payment_method_id, previous)
    if payment_method_id and payment_method_id != previous:
        _tell_renewals_method_changed(user, payment_method_id)


def _tell_renewals_method_changed(user, payment_method_id: str) -> None:
    """A new default wakes renewals that wait for a method (hard declines). Only a real change,
    and only for a cycle that has not tried this method yet (renewals decides, through its hook)."""
    hooks.default_method_changed(user=user, now=timezone.now(), payment_method_id=payment_method_id)


def set_default_method(*, user, payment_method_id: str) -> None:
    method = own_method(user, payment_method_id)
    try:
        _set_default(user=user, customer_id=method.customer_id, payment_method_id=method.id)
    except GatewayError as exc:
        raise PaymentError(exc.user_message, code=exc.code) from exc


def rules_using_method(*, user, payment_method_id: str) -> list:
    """Enabled auto-renewal rules that would charge this method: named explicitly, or through
    the default when it is the default (renewals answers, through its hook)."""
    is_default = gateways.default_payment_method_id(user) == payment_method_id
    return hooks.method_users(user=user, payment_method_id=payment_method_id, is_default=is_default)


def remove_method(*, user, payment_method_id: str, replacement_id: str = "") -> None:
    """Detach a method. If an auto-renewal rule charges it, a replacement must be named first;
    the rules then charge the replacement (and it becomes the default if the removed one was)."""
    method = own_method(user, payment_method_id)
    replacement = None
    if replacement_id:
        replacement = own_method(user, replacement_id)
        if replacement.id == method.id:
            raise PaymentError(_("Choose a different payment method as the replacement."), code="same_method")
    rules = rules_using_method(user=user, payment_method_id=method.id)
    if rules and replacement is None:
        raise ReplacementRequired(
            _("An auto-renewal rule charges this payment method. Choose a replacement before removing it."), rules=rules
        )
    was_default = gateways.default_payment_method_id(user) == method.id
    try:
        if was_default:
            _set_default(user=user, customer_id=method.customer_id, payment_method_id=replacement.id if replacement else None)
        if replacement is not None:
            moved = move_rules_to_method(user=user, from_id=method.id, to_id=replacement.id)
            logger.info("renewal_rules_moved user=%s from=%s to=%s rules=%s", user.pk, method.id, replacement.id, moved)
        gateways.detach_payment_method(method.id)
    except GatewayError as exc:
        logger.warning("payment_method_remove_failed user=%s pm=%s code=%s", user.pk, method.id, exc.code)
        raise PaymentError(exc.user_message, code=exc.code) from exc
    logger.info("payment_method_removed user=%s pm=%s replacement=%s", user.pk, method.id, replacement.id if replacement else "")


# --- on-session payments -----------------------------------------------------------------------

def _new_charge(*, user, line: Line | None, package: Package | None, amount_minor: int, currency: str,
                purpose: str, method, renewal=None, now: datetime) -> Charge:
    # Committed before the processor is called (autocommit outside a transaction): an attempt
    # can never exist at Stripe without the row that explains it.
    return Charge.objects.create(
        user=user, line=line, package=package, renewal=renewal, purpose=purpose,
        amount_minor=amount_minor, currency=currency, status=Charge.Status.PENDING, on_session=True,
        idempotency_key=f"{purpose}-{uuid.uuid4().hex}",
        payment_method_id=method.id, payment_method_summary=gateways.payment_method_summary(method)[:100],
        sent_at=now,
    )


def purchase_package(*, user, line: Line, package: Package, payment_method_id: str, now: datetime | None = None) -> Charge:
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
    method = own_method(user, payment_method_id)
    charge = _new_charge(user=user, line=line, package=package, amount_minor=package.price_minor, currency=package.currency,
                         purpose=Charge.Purpose.PURCHASE, method=method, now=now)
    logger.info("purchase_started charge=%s user=%s line=%s package=%s", charge.pk, user.pk, line.pk, package.pk)
    outcome = gateways.charge_on_session(charge=charge, customer_id=method.customer_id, payment_method_id=method.id)
    if outcome.kind is OutcomeKind.THROTTLED:
        # Never sent: no attempt to keep on the ledger.
        Charge.objects.filter(pk=charge.pk, status=Charge.Status.PENDING, payment_intent_id__isnull=True).delete()
        processor_busy(charge, outcome)
    return record_outcome(charge_id=charge.pk, outcome=outcome)


def processor_busy(charge: Charge, outcome: ChargeOutcome):
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
        logger.warning("payment_not_withdrawn charge=%s pi=%s status=%s", charge.pk, intent_id, outcome.payment_intent_status)
        return Charge.objects.get(pk=charge.pk)
    if outcome.kind is not OutcomeKind.SUCCEEDED:
        outcome = ChargeOutcome(OutcomeKind.SOFT_DECLINE, intent_id, "superseded", "Replaced by a new payment.")
    logger.info("payment_withdrawn charge=%s pi=%s kind=%s", charge.pk, intent_id, outcome.kind.value)
    return record_outcome(charge_id=charge.pk, outcome=outcome)


def complete_authentication(*, user, charge_id: int) -> Charge:
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
            return record_outcome(charge_id=charge.pk, outcome=ChargeOutcome(
                OutcomeKind.SOFT_DECLINE, None, "not_sent", "The payment processor never received this payment."))
        return charge
    return record_outcome(charge_id=charge.pk, outcome=gateways.outcome_from_payment_intent(intent))


def reconcile_stale_purchases(*, now: datetime | None = None) -> list[int]:
    """Purchases left pending (a time-out, a crash between Stripe's answer and our commit),
    older than PAYMENTS_RECONCILE_AFTER: look each up and settle it. Renewal charges are the
    renewals dispatcher's (renewals.services.reconcile_charge). Returns the ids settled."""
    now = now or timezone.now()
    stale = Charge.objects.filter(renewal__isnull=True, status=Charge.Status.PENDING,
                                  sent_at__lt=now - settings.PAYMENTS_RECONCILE_AFTER).order_by("sent_at")[:100]
    settled = []
    for charge in stale:
        if reconcile(charge=charge, not_found_means_not_sent=True).status != Charge.Status.PENDING:
            settled.append(charge.pk)
    # Purchases waiting for 3-D Secure, on their own schedule (Charge.next_check_at), earliest due
    # first: the customer may have paid at the bank with neither the return page nor the webhook
    # reaching us. Rows from before next_check_at existed are due after PAYMENTS_RECONCILE_AFTER.
    waiting = Charge.objects.filter(renewal__isnull=True, status=Charge.Status.REQUIRES_ACTION).filter(
        Q(next_check_at__lte=now) | Q(next_check_at__isnull=True, sent_at__lt=now - settings.PAYMENTS_RECONCILE_AFTER),
    ).order_by(F("next_check_at").asc(nulls_first=True), "sent_at", "id")[:100]
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
        return record_outcome(charge_id=charge.pk, outcome=outcome, now=now)
    if expired and (outcome is None or outcome.kind not in (OutcomeKind.AUTHENTICATION_REQUIRED, OutcomeKind.PENDING,
                                                             OutcomeKind.PROCESSOR_ERROR)):
        logger.info("purchase_authentication_expired charge=%s pi=%s", charge.pk, intent_id)
        return record_outcome(charge_id=charge.pk, now=now, outcome=ChargeOutcome(
            OutcomeKind.SOFT_DECLINE, intent_id, "authentication_timeout", "The payment was not confirmed with the bank in time."))
    Charge.objects.filter(pk=charge.pk, status=Charge.Status.REQUIRES_ACTION).update(
        next_check_at=next_authentication_check(sent_at=charge.sent_at, now=now, cap=settings.PAYMENTS_RECONCILE_AFTER))
    return Charge.objects.get(pk=charge.pk)


# --- recording outcomes --------------------------------------------------------------------------

FAILED_KINDS = {
    OutcomeKind.SOFT_DECLINE: Charge.DeclineKind.SOFT,
    OutcomeKind.HARD_DECLINE: Charge.DeclineKind.HARD,
}


def record_outcome(*, charge_id: int, outcome: ChargeOutcome, now: datetime | None = None) -> Charge:
    """Record the processor's answer on the ledger. Idempotent and order-proof: a settled charge
    (succeeded, failed, refunded) never changes again, so a duplicate or late webhook, the
    browser's return and reconciliation can all call this. A purpose with a registered handler
    (payments.outcomes: renewals) is handed the outcome, and moves its own state on in the same
    transaction; purchases are recorded here."""
    now = now or timezone.now()
    kind = outcome.kind
    charge = Charge.objects.get(pk=charge_id)
    handler = outcomes.handler_for(charge.purpose)
    if handler is not None and kind not in (OutcomeKind.PROCESSOR_ERROR, OutcomeKind.PENDING):
        handler(charge_id=charge.pk, outcome=outcome, now=now)
        return Charge.objects.get(pk=charge_id)
    with transaction.atomic():
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        if charge.status not in (Charge.Status.PENDING, Charge.Status.REQUIRES_ACTION):
            if kind is OutcomeKind.SUCCEEDED and charge.status == Charge.Status.FAILED:
                # No outcome is dropped: the customer was told this purchase failed (and may have
                # bought again), so the money goes back rather than a package nobody expects.
                return _refund_paid_after_closed(charge=charge, outcome=outcome, now=now)
            logger.info("charge_outcome_ignored charge=%s status=%s kind=%s", charge.pk, charge.status, kind.value)
            return charge
        if outcome.payment_intent_id:
            charge.payment_intent_id = outcome.payment_intent_id
        previous = charge.status
        if kind is OutcomeKind.SUCCEEDED:
            charge.status = Charge.Status.SUCCEEDED
            charge.decline_kind = ""
            charge.failure_code = charge.failure_message = ""
            charge.settled_at = now
            if charge.purpose == Charge.Purpose.PURCHASE and charge.line_id and charge.package_id:
                try:
                    # Atomic with the charge's success: both commit or neither does.
                    apply_package(line=charge.line, package=charge.package, now=now)
                except LineTerminated:
                    _refund_purchase_for_terminated_line(charge=charge, now=now)
        elif kind is OutcomeKind.AUTHENTICATION_REQUIRED:
            if previous != Charge.Status.REQUIRES_ACTION:
                # Looked up at the processor until it settles (reconcile_stale_purchases).
                charge.next_check_at = next_authentication_check(sent_at=charge.sent_at, now=now, cap=settings.PAYMENTS_RECONCILE_AFTER)
            charge.status = Charge.Status.REQUIRES_ACTION
            charge.decline_kind = Charge.DeclineKind.AUTHENTICATION_REQUIRED
            charge.failure_code = outcome.failure_code[:100]
            charge.failure_message = outcome.failure_message[:500]
        elif kind in FAILED_KINDS:
            charge.status = Charge.Status.FAILED
            charge.decline_kind = FAILED_KINDS[kind]
            charge.failure_code = outcome.failure_code[:100]
            charge.failure_message = outcome.failure_message[:500]
            charge.settled_at = now
        elif kind is OutcomeKind.PROCESSOR_ERROR:
            # Unknown: stays pending with the reason, reconciled later.
            charge.decline_kind = Charge.DeclineKind.PROCESSOR_ERROR
            charge.failure_code = outcome.failure_code[:100]
            charge.failure_message = outcome.failure_message[:500]
        charge.save()
    logger.info("charge_recorded charge=%s purpose=%s status=%s->%s kind=%s pi=%s code=%s", charge.pk, charge.purpose,
                previous, charge.status, kind.value, charge.payment_intent_id, charge.failure_code)
    return charge


def _refund_purchase_for_terminated_line(*, charge: Charge, now: datetime) -> None:
    """A purchase paid after its line was terminated (the customer finished 3-D Secure late):
    nothing can be applied, so the money goes back, as for a renewal paid for a terminated line
    (docs/precedence.md). Kept on the ledger as `refund_due`, an operator alerted, refunded after
    the commit (refund_due_charge; the payments sweep retries it). The caller saves the charge."""
    charge.status = Charge.Status.REFUND_DUE
    charge.failure_code = "line_terminated"
    charge.failure_message = f"paid after line {charge.line_id} was terminated: refunded"
    logger.error("purchase_paid_for_terminated_line charge=%s line=%s pi=%s: refunding", charge.pk, charge.line_id,
                 charge.payment_intent_id)
    outcomes.alert_operator(line_id=charge.line_id, reason="line_terminated", now=now,
                            message=f"purchase charge {charge.pk} ({charge.payment_intent_id}) paid for terminated line "
                                    f"{charge.line_id}: refunding {charge.amount_minor} {charge.currency}")
    charge_id = charge.pk
    transaction.on_commit(lambda: refund_due_charge(charge_id=charge_id))


def _refund_paid_after_closed(*, charge: Charge, outcome: ChargeOutcome, now: datetime) -> Charge:
    previous = charge.status
    charge.status = Charge.Status.REFUND_DUE
    charge.payment_intent_id = outcome.payment_intent_id or charge.payment_intent_id
    charge.decline_kind = ""
    charge.failure_code = "paid_after_closed"
    charge.failure_message = "paid after it was recorded as failed: refunded"
    charge.settled_at = now
    charge.save()
    logger.error("charge_paid_after_closed charge=%s purpose=%s was=%s pi=%s: refunding", charge.pk, charge.purpose, previous,
                 charge.payment_intent_id)
    if charge.line_id:
        outcomes.alert_operator(line_id=charge.line_id, reason="paid_after_closed", now=now,
                                message=f"charge {charge.pk} ({charge.payment_intent_id}) paid after it was recorded as "
                                        f"{previous}: refunding {charge.amount_minor} {charge.currency}")
    charge_id = charge.pk
    transaction.on_commit(lambda: refund_due_charge(charge_id=charge_id))
    return charge


# --- refunds (operator) --------------------------------------------------------------------------

def refund_charge(*, charge_id: int, amount_minor: int | None = None, operator=None) -> Charge:
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
            raise PaymentError(_("An earlier refund of this payment is still being checked; try again in a few minutes."),
                               code="refund_in_doubt")
        remaining = charge.amount_minor - charge.refunded_minor
        amount = remaining if amount_minor is None else int(amount_minor)
        if amount <= 0 or amount > remaining:
            raise PaymentError(_("Nothing left to refund, or more than what is left."), code="refund_amount")
        refunded_before = charge.refunded_minor
        try:
            gateways.refund_payment_intent(payment_intent_id=charge.payment_intent_id, amount_minor=amount,
                                           idempotency_key=f"refund-{charge.pk}-{charge.refunded_minor}-{amount}", charge_id=charge.pk)
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
        raise PaymentError(_("The payment processor did not answer; the refund will be checked and shown here."),
                           code=lost.code)
    logger.info("charge_refunded charge=%s amount=%s refunded_total=%s status=%s operator=%s", charge.pk, amount,
                charge.refunded_minor, charge.status, getattr(operator, "pk", None))
    return charge


# Why a charge is refund_due (renewals.services and _refund_paid_after_closed write these).
REFUND_DUE_CODES = ("paid_after_closed", "line_terminated")


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
        if found or (charge.refund_in_doubt_since and charge.refund_in_doubt_since < now - settings.PAYMENTS_RECONCILE_AFTER):
            charge.refund_in_doubt_since = None
        charge.save(update_fields=["refunded_minor", "status", "refund_in_doubt_since", "updated_at"])
    if before != (charge.refunded_minor, charge.status):
        logger.warning("charge_refunds_reconciled charge=%s refunded=%s->%s status=%s->%s", charge.pk, before[0],
                       charge.refunded_minor, before[1], charge.status)
    return charge


def reconcile_refunds_in_doubt(*, limit: int = 100) -> list[int]:
    """The sweep's part: every refund whose answer was lost is looked up (oldest first)."""
    ids = list(Charge.objects.filter(refund_in_doubt_since__isnull=False).order_by("refund_in_doubt_since")
               .values_list("id", flat=True)[:limit])
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
        try:
            already = gateways.refunded_total(charge.payment_intent_id)
            if already < charge.amount_minor:
                # One key per stay in refund_due (a retry after a lost answer reuses it; a refund the
                # processor failed, which reconcile_refunds put back here, gets a new one).
                stay = charge.updated_at.strftime("%Y%m%d%H%M%S%f")
                gateways.refund_payment_intent(payment_intent_id=charge.payment_intent_id, amount_minor=charge.amount_minor - already,
                                               idempotency_key=f"refund-due-{charge.pk}-{stay}", charge_id=charge.pk)
        except GatewayError as exc:
            logger.warning("refund_due_not_sent charge=%s pi=%s code=%s", charge.pk, charge.payment_intent_id, exc.code)
            return charge
        charge.refunded_minor = charge.amount_minor
        charge.status = Charge.Status.REFUNDED
        charge.save()
    logger.info("charge_refunded charge=%s amount=%s status=%s reason=%s", charge.pk, charge.amount_minor, charge.status,
                charge.failure_code)
    return charge


def refund_due_charges(*, limit: int = 100) -> list[int]:
    """The sweep behind each refund's own after-commit call: every charge still `refund_due`."""
    ids = list(Charge.objects.filter(status=Charge.Status.REFUND_DUE).order_by("id").values_list("id", flat=True)[:limit])
    return [charge_id for charge_id in ids if refund_due_charge(charge_id=charge_id).status == Charge.Status.REFUNDED]


# --- webhooks ----------------------------------------------------------------------------------------

LOCAL_WEBHOOK_ENDPOINT_ID = "we_localstripe"
INVALID_WEBHOOK_TRIGGER_RETENTION_DAYS = 1


def prune_webhook_triggers(*, now: datetime | None = None) -> tuple[int, int]:
    """Delete stored webhook requests (dj-stripe's WebhookEventTrigger, raw bodies and headers):
    those that failed validation after a day, the others after
    STRIPE_WEBHOOK_TRIGGER_RETENTION_DAYS. Their Events stay, so a redelivery is still a
    duplicate. Returns (invalid deleted, valid deleted)."""
    from datetime import timedelta

    from djstripe.models import WebhookEventTrigger

    now = now or timezone.now()
    invalid, _by_model = WebhookEventTrigger.objects.filter(
        valid=False, created__lt=now - timedelta(days=INVALID_WEBHOOK_TRIGGER_RETENTION_DAYS)).delete()
    valid, _by_model = WebhookEventTrigger.objects.filter(
        valid=True, created__lt=now - timedelta(days=settings.STRIPE_WEBHOOK_TRIGGER_RETENTION_DAYS)).delete()
    logger.info("webhook_triggers_pruned invalid=%s valid=%s", invalid, valid)
    return invalid, valid


def configure_local_webhook_endpoint(*, base_url: str, register: bool = True):
    """Development and tests: the dj-stripe endpoint row (holding the signing secret) and
    localstripe's delivery to it. Real Stripe endpoints are created in the dashboard and synced."""
    from djstripe.models import Account, WebhookEndpoint

    gateways.ensure_local_owner_account()
    account = Account.objects.get(id=gateways.LOCAL_ACCOUNT_ID)
    endpoint, _created = WebhookEndpoint.objects.get_or_create(
        id=LOCAL_WEBHOOK_ENDPOINT_ID,
        defaults={"url": base_url, "secret": settings.STRIPE_WEBHOOK_SECRET, "enabled_events": ["*"], "status": "enabled",
                  "api_version": "", "livemode": False, "djstripe_owner_account": account},
    )
    url = base_url.rstrip("/") + reverse_webhook_path(endpoint)
    if endpoint.url != url or endpoint.secret != settings.STRIPE_WEBHOOK_SECRET:
        endpoint.url = url
        endpoint.secret = settings.STRIPE_WEBHOOK_SECRET
        endpoint.save(update_fields=["url", "secret"])
    if register:
        gateways.register_local_webhook(url=url, secret=settings.STRIPE_WEBHOOK_SECRET)
    logger.info("local_webhook_configured endpoint=%s url=%s", endpoint.id, url)
    return endpoint


def reverse_webhook_path(endpoint) -> str:
    from django.urls import reverse

    return reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": endpoint.djstripe_uuid})


# --- refunds of duplicate payments (operator) --------------------------------------------------------

DUPLICATE_PAYMENT = "duplicate_payment"  # renewals.services._record_success: money taken twice for one renewal


def refund_duplicate_payment(*, charge_id: int, operator=None) -> Charge:
    """Refund a renewal's second payment. The engine keeps it on the ledger as failed with the code
    `duplicate_payment` (the one-success-per-renewal constraint), but the processor holds the money:
    give all of it back, under the charge's row lock like refund_charge. The status stays failed
    (that constraint); `refunded_minor` says the money went back."""
    with transaction.atomic():
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        if charge.status != Charge.Status.FAILED or charge.failure_code != DUPLICATE_PAYMENT or not charge.payment_intent_id:
            raise PaymentError(_("Only a succeeded payment can be refunded."), code="not_refundable")
        amount = charge.amount_minor - charge.refunded_minor
        if amount <= 0:
            raise PaymentError(_("Nothing left to refund, or more than what is left."), code="refund_amount")
        try:
            gateways.refund_payment_intent(payment_intent_id=charge.payment_intent_id, amount_minor=amount,
                                           idempotency_key=f"refund-{charge.pk}-{charge.refunded_minor}-{amount}", charge_id=charge.pk)
        except GatewayError as exc:
            raise PaymentError(exc.user_message, code=exc.code) from exc
        charge.refunded_minor += amount
        charge.save(update_fields=["refunded_minor", "updated_at"])
    logger.info("duplicate_payment_refunded charge=%s amount=%s renewal=%s operator=%s", charge.pk, amount,
                charge.renewal_id, getattr(operator, "pk", None))
    return charge


def move_rules_to_method(*, user, from_id: str, to_id: str) -> int:
    """Point the customer's rules that charge `from_id` at `to_id` (renewals does it, through its hook)."""
    return hooks.move_method_users(user=user, from_id=from_id, to_id=to_id)
