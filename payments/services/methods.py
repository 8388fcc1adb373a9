"""Binding, listing, choosing and removing payment methods. Whether an auto-renewal rule charges a
method, and what a new default wakes, is renewals' to say, asked through payments.hooks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import stripe
from django.conf import settings
from django.db.models import Model
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import gateways, hooks, selectors
from ..gateways import GatewayError
from .errors import BindingFailed, MethodUnavailable, PaymentError, PaymentMethodNotFound, ReplacementRequired

if TYPE_CHECKING:
    from djstripe.models import PaymentMethod

    from accounts.models import User

    from ..selectors import SavedMethod

logger = logging.getLogger(__name__)


METHOD_TYPES = ("card", "sepa_debit", "paypal")


def method_types_for_currency(currency: str) -> list[str]:
    """What the operator offers to pay `currency` with (settings.PAYMENT_METHOD_TYPES_BY_CURRENCY,
    docs/payment-methods.md): SEPA only where the euro is, PayPal only where the account has it."""
    by_currency = {code.upper(): types for code, types in settings.PAYMENT_METHOD_TYPES_BY_CURRENCY.items()}
    types = by_currency.get((currency or "").upper(), settings.PAYMENT_METHOD_TYPES_DEFAULT)
    return [t for t in METHOD_TYPES if t in types and (t != "paypal" or settings.STRIPE_PAYPAL_ENABLED)]


def usable_methods_for_currency(user: User, currency: str) -> list[SavedMethod]:
    """The customer's usable saved methods of the types the operator takes in `currency`: what a
    page paying in that currency lists and accepts (pay-now, a new eSIM)."""
    offered = method_types_for_currency(currency)
    return [m for m in selectors.usable_payment_methods_for_user(user) if m.type in offered]


def customer_currencies(user: User) -> list[str]:
    """The currencies a customer pays in: their lines' packages and their past charges; a new
    customer the site's default."""
    from accounts.models import Line

    from ..models import Charge

    # One query (UNION), not two: the rule page asks on every view and has a query budget.
    lines = Line.objects.filter(owner=user, package__isnull=False).order_by().values_list("package__currency")
    charges = Charge.objects.filter(user=user).order_by().values_list("currency")
    currencies = {currency for (currency,) in lines.union(charges)}
    return sorted({c.upper() for c in currencies}) or [settings.DEFAULT_CURRENCY.upper()]


def method_types_for_user(user: User) -> list[str]:
    """The types offered on the customer's methods page: those every currency they pay in takes,
    so a saved method can pay each of their renewals (a SEPA mandate cannot pay a CNY package)."""
    offered = [set(method_types_for_currency(currency)) for currency in customer_currencies(user)]
    common = set.intersection(*offered) if offered else set()
    return [t for t in METHOD_TYPES if t in common] or ["card"]


def enabled_method_types() -> list[str]:
    """Every type some currency offers (the form's choices)."""
    currencies = [*settings.PAYMENT_METHOD_TYPES_BY_CURRENCY, "*"]
    return [t for t in METHOD_TYPES if any(t in method_types_for_currency(c) for c in currencies)]


@dataclass(frozen=True)
class BindingStart:
    setup_intent_id: str
    client_secret: str
    method_type: str


def start_binding(*, user: User, method_type: str) -> BindingStart:
    """A fresh SetupIntent the browser confirms with Stripe.js; the card number or IBAN goes
    from the browser to Stripe, never to us."""
    if method_type not in method_types_for_user(user):
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


def _setup_error_message(intent: stripe.SetupIntent) -> str:
    error = gateways._get(intent, "last_setup_error")
    code = gateways._get(error, "code") or ""
    if code == "card_declined" or intent["status"] == "canceled":
        return _("Your card was declined. Nothing was saved; please use another card.")
    return _("The payment method could not be set up. Nothing was saved.")


def confirmed_setup_intent(*, user: User, setup_intent_id: str, customer_id: str) -> stripe.SetupIntent:
    """The customer's SetupIntent as Stripe reports it, read back with our secret key: the browser
    only tells us which intent, never which method. BindingFailed if it is another customer's or
    not confirmed."""
    try:
        intent = gateways.retrieve_setup_intent(setup_intent_id)
    except GatewayError as exc:
        logger.warning("binding_finish_failed user=%s setup_intent=%s code=%s", user.pk, setup_intent_id, exc.code)
        raise BindingFailed(
            exc.user_message if exc.unknown else _("The payment method could not be set up. Nothing was saved."),
            code=exc.code,
        ) from exc
    if gateways._get(intent, "customer") != customer_id:
        logger.warning("binding_foreign_intent user=%s setup_intent=%s", user.pk, setup_intent_id)
        raise BindingFailed(
            _("The payment method could not be set up. Nothing was saved."), code="foreign_setup_intent"
        )
    if intent["status"] != "succeeded":
        logger.info("binding_declined user=%s setup_intent=%s status=%s", user.pk, setup_intent_id, intent["status"])
        raise BindingFailed(_setup_error_message(intent), code="setup_failed")
    return intent


def approved_method_summary(*, user: User, setup_intent_id: str) -> str:
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


def finish_binding(*, user: User, setup_intent_id: str, make_default: bool = False) -> PaymentMethod:
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
                logger.warning(
                    "binding_cancel_failed user=%s setup_intent=%s code=%s", user.pk, setup_intent_id, cancel_exc.code
                )
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


def own_method(user: User, payment_method_id: str) -> PaymentMethod:
    from djstripe.models import PaymentMethod

    customer = gateways.customer_for_user(user)
    # The id comes from the URL: PostgreSQL refuses a NUL in a query (a 500), and no Stripe id has one.
    usable = customer and payment_method_id and "\x00" not in payment_method_id
    method = PaymentMethod.objects.filter(id=payment_method_id, customer=customer).first() if usable else None
    if method is None:
        logger.warning("payment_method_not_found user=%s pm=%r", user.pk, (payment_method_id or "")[:64])
        raise PaymentMethodNotFound(_("Payment method not found."), code="not_found")
    return method


def _set_default(*, user: User, customer_id: str, payment_method_id: str | None) -> None:
    previous = gateways.default_payment_method_id(user)
    gateways.set_default_payment_method(customer_id=customer_id, payment_method_id=payment_method_id)
    logger.info("default_payment_method_set user=%s pm=%s previous=%s", user.pk, payment_method_id, previous)
    if payment_method_id and payment_method_id != previous:
        _tell_renewals_method_changed(user, payment_method_id)


def _tell_renewals_method_changed(user: User, payment_method_id: str) -> None:
    """A new default wakes renewals that wait for a method (hard declines). Only a real change,
    and only for a cycle that has not tried this method yet (renewals decides, through its hook)."""
    hooks.default_method_changed(user=user, now=timezone.now(), payment_method_id=payment_method_id)


def set_default_method(*, user: User, payment_method_id: str) -> None:
    method = own_method(user, payment_method_id)
    try:
        _set_default(user=user, customer_id=method.customer_id, payment_method_id=method.id)
    except GatewayError as exc:
        raise PaymentError(exc.user_message, code=exc.code) from exc


def rules_using_method(*, user: User, payment_method_id: str) -> Sequence[Model]:
    """Enabled auto-renewal rules that would charge this method: named explicitly, or through
    the default when it is the default (renewals answers, through its hook)."""
    is_default = gateways.default_payment_method_id(user) == payment_method_id
    return hooks.method_users(user=user, payment_method_id=payment_method_id, is_default=is_default)


def remove_method(*, user: User, payment_method_id: str, replacement_id: str = "") -> None:
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
            _set_default(
                user=user, customer_id=method.customer_id, payment_method_id=replacement.id if replacement else None
            )
        if replacement is not None:
            moved = move_rules_to_method(user=user, from_id=method.id, to_id=replacement.id)
            logger.info("renewal_rules_moved user=%s from=%s to=%s rules=%s", user.pk, method.id, replacement.id, moved)
        gateways.detach_payment_method(method.id)
    except GatewayError as exc:
        logger.warning("payment_method_remove_failed user=%s pm=%s code=%s", user.pk, method.id, exc.code)
        raise PaymentError(exc.user_message, code=exc.code) from exc
    logger.info(
        "payment_method_removed user=%s pm=%s replacement=%s", user.pk, method.id, replacement.id if replacement else ""
    )


def move_rules_to_method(*, user: User, from_id: str, to_id: str) -> int:
    """Point the customer's rules that charge `from_id` at `to_id` (renewals does it, through its hook)."""
    return hooks.move_method_users(user=user, from_id=from_id, to_id=to_id)
