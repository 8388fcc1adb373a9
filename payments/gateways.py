"""The one module that talks to Stripe (localstripe in development and tests). Everything
else calls these functions and gets plain results back: no Stripe exception leaves here
from a charge call, and the quirks of localstripe are handled in this file only.

Charges: the caller writes the `Charge` row (with its idempotency key) *before* calling
`charge_off_session` / `charge_on_session`. A `processor_error` outcome means the result is
UNKNOWN (time-out, connection reset, 5xx, 429): reconcile with
`find_payment_intent_for_charge`, never re-send blindly (docs/invariants.md #1). A `throttled`
outcome is the opposite: our own write limiter held the request back, nothing was sent.

Every write (POST/DELETE, dj-stripe's included) goes through `WriteLimitedClient`, the SDK's HTTP
client installed by `configure()`: it takes a send slot from payments.processor_limit first.

Longer than our ~400-line habit on purpose: this is the one adapter to the processor (the
ports-and-adapters boundary), checked by mypy strict as a unit, and a reader looking for "what do
we send to Stripe" should find all of it, in order (configuration, customers, payment methods,
charges, webhooks, errors), in one file.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import stripe
from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from . import hooks, processor_limit

if TYPE_CHECKING:
    from accounts.models import User

    from .models import Charge

logger = logging.getLogger(__name__)

LOCAL_ACCOUNT_ID = "acct_localstripe"
STRIPE_PRODUCTION_API_BASE = "https://api.stripe.com"

# Card brands as Stripe spells them -> as people read them.
BRAND_NAMES = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
    "cartes_bancaires": "Cartes Bancaires",
    "eftpos_au": "eftpos",
    "interac": "Interac",
}


class OutcomeKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    # The processor accepted the payment but settles later (SEPA Direct Debit): a webhook
    # or reconciliation decides; the charge stays pending.
    PENDING = "pending"
    SOFT_DECLINE = "soft_decline"
    HARD_DECLINE = "hard_decline"
    AUTHENTICATION_REQUIRED = "authentication_required"
    # Outcome unknown: the request may or may not have reached Stripe.
    PROCESSOR_ERROR = "processor_error"
    # Certainly not sent: our write limiter refused it (limit held past the bounded wait, or its
    # Redis unreachable). Nothing to reconcile, no attempt made: try again later.
    THROTTLED = "throttled"


@dataclass(frozen=True)
class ChargeOutcome:
    kind: OutcomeKind
    payment_intent_id: str | None = None
    failure_code: str = ""
    failure_message: str = ""
    # Given when the customer must act in the browser (3-D Secure on-session).
    client_secret: str | None = None
    payment_intent_status: str = ""

    @property
    def succeeded(self) -> bool:
        return self.kind is OutcomeKind.SUCCEEDED

    @property
    def is_unknown(self) -> bool:
        return self.kind is OutcomeKind.PROCESSOR_ERROR

    @property
    def is_decline(self) -> bool:
        return self.kind in (OutcomeKind.SOFT_DECLINE, OutcomeKind.HARD_DECLINE)


class GatewayError(Exception):
    """A non-charge call to Stripe failed (binding, listing, detaching). `user_message` is
    safe to show; `code` is Stripe's error code if there was one."""

    def __init__(self, message: str, *, code: str = "", declined: bool = False, unknown: bool = False):
        super().__init__(message)
        self.user_message = message
        self.code = code
        # The processor refused (card declined, invalid data): nothing to retry blindly.
        self.declined = declined
        # Time-out / connection / 5xx: we do not know whether it happened.
        self.unknown = unknown


class ProcessorBusy(GatewayError):
    """Raised from the HTTP client before a write is sent: the processor write limit is reached
    for longer than STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS, or the limiter cannot be asked. Nothing
    was sent, so it is safe to retry."""

    def __init__(self, reason: str):
        super().__init__(
            _("The payment processor is busy right now. Nothing was charged or saved; please try again in a moment."),
            code=f"processor_busy_{reason}",
        )
        self.reason = reason


WRITE_METHODS = frozenset({"post", "delete"})


class WriteLimitedClient(stripe.HTTPClient):
    """The SDK's HTTP client for every Stripe request of the process: a write (each try of it,
    retries included) first waits for its slot from the processor write limiter."""

    def __init__(self, inner: stripe.HTTPClient):
        super().__init__()
        self.inner = inner
        # The SDK names its clients per class; this wrapper reports the wrapped one's name.
        self.name = inner.name  # type: ignore[misc]

    def _slot(self, method: str, url: str) -> None:
        if method.lower() not in WRITE_METHODS:
            return
        try:
            processor_limit.acquire_write(method=method.upper(), path=urlsplit(url).path)
        except processor_limit.WriteNotSent as exc:
            raise ProcessorBusy(exc.reason) from exc

    # `_usage` is the SDK's telemetry tag: its own clients take it in the signature and drop it.
    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        self._slot(method, url)
        return self.inner.request(method, url, headers, post_data)

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        self._slot(method, url)
        return self.inner.request_stream(method, url, headers, post_data)

    def close(self) -> None:
        self.inner.close()  # type: ignore[no-untyped-call]  # the SDK leaves close() unannotated


# --- configuration -----------------------------------------------------------------------


def configure() -> None:
    """Point the SDK (and therefore dj-stripe, which uses the same globals) at the configured
    API. Called from PaymentsConfig.ready()."""
    stripe.api_key = settings.STRIPE_SECRET_KEY
    stripe.api_base = settings.STRIPE_API_BASE
    # Reads may retry; the charge calls pass max_network_retries=0 per request, because
    # localstripe ignores Idempotency-Key and a retried create would be a second charge.
    stripe.max_network_retries = settings.STRIPE_MAX_NETWORK_RETRIES
    stripe.default_http_client = WriteLimitedClient(stripe.RequestsClient(timeout=settings.STRIPE_HTTP_TIMEOUT_SECONDS))


def is_local_stripe() -> bool:
    return not settings.STRIPE_API_BASE.rstrip("/").startswith(STRIPE_PRODUCTION_API_BASE)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_local_test_stripe() -> bool:
    """Stricter than is_local_stripe(), for what only demo data may do: the API is on this
    machine (localstripe), the key is a test key and live mode is off."""
    return (
        urlsplit(settings.STRIPE_API_BASE).hostname in LOOPBACK_HOSTS
        and settings.STRIPE_SECRET_KEY.startswith("sk_test_")
        and not settings.STRIPE_LIVE_MODE
    )


def ensure_local_owner_account() -> None:
    """localstripe has no GET /v1/account, which dj-stripe calls the first time it syncs
    anything for a key with no owner account. For local keys only, create the Account and
    APIKey rows it would have fetched. Against real Stripe this does nothing: dj-stripe
    fetches the real account."""
    if not is_local_stripe():
        return
    from djstripe.enums import APIKeyType
    from djstripe.models import Account, APIKey

    key = settings.STRIPE_SECRET_KEY
    if APIKey.objects.filter(secret=key, djstripe_owner_account__isnull=False).exists():
        return
    with transaction.atomic():
        account, _created = Account.objects.get_or_create(
            id=LOCAL_ACCOUNT_ID,
            defaults={"livemode": False, "stripe_data": {"id": LOCAL_ACCOUNT_ID, "object": "account"}},
        )
        api_key, created = APIKey.objects.get_or_create(
            secret=key,
            defaults={"type": APIKeyType.secret, "livemode": False, "djstripe_owner_account": account},
        )
        if not created and api_key.djstripe_owner_account_id is None:
            api_key.djstripe_owner_account = account
            api_key.save(update_fields=["djstripe_owner_account"])


def _key() -> str:
    return str(settings.STRIPE_SECRET_KEY)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Read a field from a StripeObject or a dict (stripe 15's objects are not dicts)."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    try:
        return obj[name]
    except (KeyError, TypeError):
        return getattr(obj, name, default)


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


# --- customers -----------------------------------------------------------------------------


def ensure_customer(user: User) -> Any:
    """The user's dj-stripe Customer, created in Stripe on first need. The user row is locked
    so two requests cannot create two Stripe customers (dj-stripe has no unique constraint on
    the subscriber, and localstripe ignores idempotency keys)."""
    from django.contrib.auth import get_user_model
    from djstripe.models import Customer

    ensure_local_owner_account()
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        customer = Customer.objects.filter(
            subscriber=user, livemode=settings.STRIPE_LIVE_MODE, date_purged__isnull=True
        ).first()
        if customer is None:
            try:
                customer, _created = Customer.get_or_create(subscriber=user, api_key=_key())
            except stripe.StripeError as exc:
                logger.warning("stripe_customer_create_failed user=%s error=%s", user.pk, type(exc).__name__)
                raise _gateway_error(exc) from exc
            logger.info("stripe_customer_created user=%s customer=%s", user.pk, customer.id)
    if not customer.stripe_data:
        # dj-stripe's create leaves a stub row (no email, no owner account): fill it. A failure
        # here keeps the stub, which the next call completes.
        try:
            customer = Customer.sync_from_stripe_data(
                stripe.Customer.retrieve(customer.id, api_key=_key()), api_key=_key()
            )
        except stripe.StripeError as exc:
            logger.warning(
                "stripe_customer_sync_failed user=%s customer=%s error=%s", user.pk, customer.id, type(exc).__name__
            )
    return customer


def customer_for_user(user: User) -> Any:
    """The user's dj-stripe Customer, or None: never calls Stripe."""
    from djstripe.models import Customer

    return Customer.objects.filter(
        subscriber=user, livemode=settings.STRIPE_LIVE_MODE, date_purged__isnull=True
    ).first()


def sync_customer(customer_id: str) -> Any:
    from djstripe.models import Customer

    ensure_local_owner_account()
    try:
        return Customer.sync_from_stripe_data(stripe.Customer.retrieve(customer_id, api_key=_key()), api_key=_key())
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc


# --- payment methods -------------------------------------------------------------------------


def default_payment_method_id(user: User) -> str | None:
    """The id of the user's default method, if it is still attached to them. Reads our mirror
    (dj-stripe's tables); no call to Stripe."""
    from djstripe.models import PaymentMethod

    customer = customer_for_user(user)
    if customer is None:
        return None
    pm_id = customer.default_payment_method_id
    if pm_id and PaymentMethod.objects.filter(id=pm_id, customer=customer).exists():
        return str(pm_id)
    return None


def payment_method_summary(pm: Any) -> str:
    """'Visa •••• 4242', 'SEPA Direct Debit •••• 3000', 'PayPal (a@example.com)'. Never more
    than the last four digits. Accepts a dj-stripe PaymentMethod, a Stripe object or a dict."""
    data = pm.stripe_data if hasattr(pm, "stripe_data") else _as_dict(pm)
    kind = data.get("type")
    if kind == "card":
        card = data.get("card") or {}
        brand = BRAND_NAMES.get(card.get("brand") or "", (card.get("brand") or "Card").title())
        return f"{brand} •••• {card.get('last4', '????')}"
    if kind == "sepa_debit":
        return f"SEPA Direct Debit •••• {(data.get('sepa_debit') or {}).get('last4', '????')}"
    if kind == "paypal":
        email = (data.get("paypal") or {}).get("payer_email")
        return f"PayPal ({email})" if email else "PayPal"
    return str(kind or "payment method")


def create_local_test_card(number: str, *, exp_month: int = 12, exp_year: int = 2034) -> str:
    """localstripe only (demo data): a card PaymentMethod made from a raw test card number, as
    Stripe.js does in the browser; returns its id. Real Stripe never sees a card number from us."""
    if not is_local_test_stripe():
        raise GatewayError(
            "card numbers are only accepted by a local Stripe stand-in with a test key", code="not_local"
        )
    try:
        pm = stripe.PaymentMethod.create(
            type="card",
            card={"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": "123"},
            api_key=_key(),
        )
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc
    return str(pm["id"])


def create_setup_intent(*, customer_id: str, method_type: str) -> stripe.SetupIntent:
    """A fresh SetupIntent for binding a method in the browser. One per attempt: a declined
    SetupIntent is cancelled by localstripe and cannot be reused."""
    try:
        return stripe.SetupIntent.create(
            customer=customer_id,
            payment_method_types=[method_type],
            usage="off_session",
            api_key=_key(),
        )
    except stripe.StripeError as exc:
        logger.warning(
            "stripe_setup_intent_failed customer=%s type=%s error=%s code=%s",
            customer_id,
            method_type,
            type(exc).__name__,
            getattr(exc, "code", ""),
        )
        raise _gateway_error(exc) from exc


def retrieve_setup_intent(setup_intent_id: str) -> stripe.SetupIntent:
    try:
        return stripe.SetupIntent.retrieve(setup_intent_id, api_key=_key())
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc


def retrieve_payment_method(payment_method_id: str) -> stripe.PaymentMethod:
    try:
        return stripe.PaymentMethod.retrieve(payment_method_id, api_key=_key())
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc


def cancel_setup_intent(setup_intent_id: str) -> None:
    try:
        stripe.SetupIntent.cancel(setup_intent_id, api_key=_key())
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc


def attach_payment_method(*, customer_id: str, payment_method_id: str) -> Any:
    """Attach (if Stripe has not already: localstripe does not attach on a succeeded
    SetupIntent, real Stripe does) and mirror the method; returns the dj-stripe row."""
    from djstripe.models import PaymentMethod

    ensure_local_owner_account()
    try:
        pm = stripe.PaymentMethod.retrieve(payment_method_id, api_key=_key())
        attached_to = _get(pm, "customer")
        if attached_to and _get(attached_to, "id", attached_to) != customer_id:
            raise GatewayError(_("This payment method cannot be used."), code="foreign_payment_method", declined=True)
        if not attached_to:
            pm = stripe.PaymentMethod.attach(payment_method_id, customer=customer_id, api_key=_key())
        return PaymentMethod.sync_from_stripe_data(pm, api_key=_key())
    except stripe.StripeError as exc:
        logger.warning(
            "stripe_attach_failed customer=%s pm=%s error=%s code=%s",
            customer_id,
            payment_method_id,
            type(exc).__name__,
            getattr(exc, "code", ""),
        )
        raise _gateway_error(exc) from exc


def set_default_payment_method(*, customer_id: str, payment_method_id: str | None) -> Any:
    """Make the method the customer's default ('' clears it); returns the synced Customer."""
    from djstripe.models import Customer

    ensure_local_owner_account()
    try:
        cus = stripe.Customer.modify(
            customer_id, invoice_settings={"default_payment_method": payment_method_id or ""}, api_key=_key()
        )
        return Customer.sync_from_stripe_data(cus, api_key=_key())
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc


def detach_payment_method(payment_method_id: str) -> None:
    """Detach in Stripe and mirror it. The caller clears or replaces the customer's default
    first: localstripe keeps a detached method as the default."""
    from djstripe.models import PaymentMethod

    ensure_local_owner_account()
    try:
        pm = stripe.PaymentMethod.detach(payment_method_id, api_key=_key())
        PaymentMethod.sync_from_stripe_data(pm, api_key=_key())
    except stripe.InvalidRequestError as exc:
        # Already detached or gone in Stripe: mirror that instead of failing the removal.
        if exc.http_status == 404 or "not attached" in (exc.user_message or "").lower():
            PaymentMethod.objects.filter(id=payment_method_id).update(customer=None)
            return
        raise _gateway_error(exc) from exc
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc


def forget_customer(customer_id: str) -> Any:
    """Remove the person from the processor's customer (an account closure, docs/data-rights.md):
    email, name, phone and description emptied, only dj-stripe's subscriber id kept in metadata.
    Stripe keeps the customer object and its payments, which the financial records need."""
    from djstripe.models import Customer

    ensure_local_owner_account()
    try:
        current = stripe.Customer.retrieve(customer_id, api_key=_key())
        # Stripe unsets a metadata key given as "": every key but the subscriber id goes.
        metadata = {key: "" for key in _as_dict(_get(current, "metadata") or {}) if key != "djstripe_subscriber"}
        cus = stripe.Customer.modify(
            customer_id, email="", name="", phone="", description="", metadata=metadata, api_key=_key()
        )
        return Customer.sync_from_stripe_data(cus, api_key=_key())
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc


# --- charges -------------------------------------------------------------------------------------


def _metadata(charge: Charge) -> dict[str, str]:
    data = {"charge_id": str(charge.pk)}
    if charge.renewal_id:
        data["renewal_id"] = str(charge.renewal_id)
    if charge.attempt is not None:
        data["attempt_id"] = f"{charge.renewal_id}:{charge.attempt}" if charge.renewal_id else str(charge.attempt)
    if charge.line_id:
        data["line_id"] = str(charge.line_id)
    return data


def _decline(code: str, decline_code: str, message: str, pi_id: str | None, status: str = "") -> ChargeOutcome:
    hard = hooks.hard_decline_codes()  # the operator's retry policy, through renewals' hook
    effective = decline_code or code or "card_declined"
    kind = OutcomeKind.HARD_DECLINE if (decline_code in hard or code in hard) else OutcomeKind.SOFT_DECLINE
    return ChargeOutcome(kind, pi_id, effective, message or "Your card was declined.", payment_intent_status=status)


def outcome_from_payment_intent(pi: Any) -> ChargeOutcome:
    """Classify a PaymentIntent as Stripe reports it now: used after a create, by
    reconciliation and by webhooks."""
    pi_id = _get(pi, "id")
    status = _get(pi, "status") or ""
    secret = _get(pi, "client_secret")
    error = _get(pi, "last_payment_error")
    if status == "succeeded":
        return ChargeOutcome(OutcomeKind.SUCCEEDED, pi_id, payment_intent_status=status)
    if status == "processing":
        return ChargeOutcome(OutcomeKind.PENDING, pi_id, payment_intent_status=status)
    if status in ("requires_action", "requires_confirmation"):
        # localstripe answers an off-session 3-D Secure card with requires_action instead of
        # raising authentication_required as Stripe does: both mean the customer must act.
        return ChargeOutcome(
            OutcomeKind.AUTHENTICATION_REQUIRED,
            pi_id,
            "authentication_required",
            "Your bank asks you to confirm this payment.",
            client_secret=secret,
            payment_intent_status=status,
        )
    if status in ("requires_payment_method", "canceled"):
        code = _get(error, "code") or ("canceled" if status == "canceled" else "card_declined")
        if code == "authentication_required" and status == "requires_payment_method":
            # Real Stripe's off-session answer for a card that needs 3-D Secure.
            return ChargeOutcome(
                OutcomeKind.AUTHENTICATION_REQUIRED,
                pi_id,
                code,
                _get(error, "message") or "Your bank asks you to confirm this payment.",
                client_secret=secret,
                payment_intent_status=status,
            )
        return _decline(code, _get(error, "decline_code") or "", _get(error, "message") or "", pi_id, status)
    # requires_capture (we never create manual-capture intents) or anything new: unknown.
    return ChargeOutcome(
        OutcomeKind.PROCESSOR_ERROR,
        pi_id,
        "unexpected_status",
        f"Unexpected payment status: {status}",
        payment_intent_status=status,
    )


def _payment_intent_id_from_card_error(exc: stripe.CardError) -> str | None:
    err = exc.error
    pi = _get(err, "payment_intent")
    if pi:
        return _get(pi, "id", pi) if not isinstance(pi, str) else pi
    # localstripe leaves error.payment_intent empty; its charge knows the intent.
    charge_id = _get(err, "charge")
    if charge_id:
        try:
            return cast("str | None", _get(stripe.Charge.retrieve(charge_id, api_key=_key()), "payment_intent"))
        except stripe.StripeError:
            logger.warning("stripe_charge_lookup_failed charge=%s", charge_id)
    return None


def _confirm(
    *, charge: Charge, customer_id: str, payment_method_id: str, off_session: bool, method_type: str
) -> ChargeOutcome:
    params: dict[str, Any] = {
        "amount": charge.amount_minor,
        "currency": charge.currency.lower(),
        "customer": customer_id,
        "payment_method": payment_method_id,
        "payment_method_types": [method_type],
        "confirm": True,
        "metadata": _metadata(charge),
    }
    if off_session:
        params["off_session"] = True
    try:
        pi = stripe.PaymentIntent.create(
            **params,
            idempotency_key=charge.idempotency_key,
            max_network_retries=0,
            api_key=_key(),
        )
    except ProcessorBusy as exc:
        outcome = ChargeOutcome(OutcomeKind.THROTTLED, None, exc.code, exc.user_message)
    except stripe.CardError as exc:
        pi_id = _payment_intent_id_from_card_error(exc)
        code = exc.code or ""
        if code == "authentication_required":
            err_pi = _get(exc.error, "payment_intent")
            outcome = ChargeOutcome(
                OutcomeKind.AUTHENTICATION_REQUIRED,
                pi_id,
                code,
                exc.user_message or "Your bank asks you to confirm this payment.",
                client_secret=_get(err_pi, "client_secret") if err_pi and not isinstance(err_pi, str) else None,
            )
        else:
            outcome = _decline(code, _get(exc.error, "decline_code") or "", exc.user_message or "", pi_id)
    except (
        stripe.APIConnectionError,
        stripe.RateLimitError,
        stripe.APIError,
        stripe.IdempotencyError,
        stripe.AuthenticationError,
        stripe.PermissionError,
    ) as exc:
        # Unknown: the PaymentIntent may exist. Reconcile by metadata before any new attempt.
        outcome = ChargeOutcome(
            OutcomeKind.PROCESSOR_ERROR,
            None,
            f"processor_{type(exc).__name__}",
            "The payment processor did not answer in time. We will check and try again.",
        )
    except stripe.InvalidRequestError as exc:
        # Refused before any money moved: the method is gone, not attached, wrong currency...
        # Retrying the same request cannot fix it.
        outcome = ChargeOutcome(
            OutcomeKind.HARD_DECLINE,
            None,
            exc.code or "invalid_request",
            exc.user_message or "The payment was refused by the processor.",
        )
    else:
        outcome = outcome_from_payment_intent(pi)
    logger.info(
        "stripe_charge charge=%s renewal=%s attempt=%s off_session=%s outcome=%s pi=%s code=%s",
        charge.pk,
        charge.renewal_id,
        charge.attempt,
        off_session,
        outcome.kind.value,
        outcome.payment_intent_id,
        outcome.failure_code,
    )
    return outcome


def payment_method_type(payment_method_id: str) -> str:
    """'card', 'sepa_debit', 'paypal'... from our mirror, falling back to Stripe."""
    from djstripe.models import PaymentMethod

    row = PaymentMethod.objects.filter(id=payment_method_id).first()
    if row is not None and row.type:
        return str(row.type)
    try:
        return _get(stripe.PaymentMethod.retrieve(payment_method_id, api_key=_key()), "type") or "card"
    except stripe.StripeError:
        return "card"


def charge_off_session(
    *, charge: Charge, customer_id: str, payment_method_id: str, method_type: str | None = None
) -> ChargeOutcome:
    """Charge a saved method without the customer (renewals). Never raises a Stripe error. A
    caller that has read the method from the mirror passes its type (one query fewer per renewal)."""
    return _confirm(
        charge=charge,
        customer_id=customer_id,
        payment_method_id=payment_method_id,
        off_session=True,
        method_type=method_type or payment_method_type(payment_method_id),
    )


def charge_on_session(*, charge: Charge, customer_id: str, payment_method_id: str) -> ChargeOutcome:
    """Charge with the customer at the browser (purchase, pay now). AUTHENTICATION_REQUIRED
    carries the client secret for stripe.confirmCardPayment."""
    return _confirm(
        charge=charge,
        customer_id=customer_id,
        payment_method_id=payment_method_id,
        off_session=False,
        method_type=payment_method_type(payment_method_id),
    )


def retrieve_payment_intent(payment_intent_id: str) -> stripe.PaymentIntent:
    try:
        return stripe.PaymentIntent.retrieve(payment_intent_id, api_key=_key())
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc


def cancel_payment_intent(payment_intent_id: str) -> None:
    """Best effort: an abandoned intent (requires_action / requires_payment_method) is cancelled
    so it can never be completed later next to its replacement."""
    try:
        stripe.PaymentIntent.cancel(payment_intent_id, api_key=_key())
    except (stripe.StripeError, ProcessorBusy) as exc:
        logger.warning("stripe_cancel_failed pi=%s error=%s", payment_intent_id, type(exc).__name__)


def find_payment_intent_for_charge(charge: Charge) -> stripe.PaymentIntent | None:
    """The PaymentIntent created for this charge, if any (metadata charge_id). Used to
    reconcile a charge whose outcome is unknown. Lists the customer's intents (Stripe's list is
    strongly consistent; search lags); localstripe rejects the customer filter with a 400, so
    fall back to scanning every intent there. Raises GatewayError if Stripe can't be asked:
    'not found' must never be guessed."""
    if charge.payment_intent_id:
        try:
            return stripe.PaymentIntent.retrieve(charge.payment_intent_id, api_key=_key())
        except stripe.InvalidRequestError:
            pass
        except stripe.StripeError as exc:
            raise _gateway_error(exc) from exc
    wanted = str(charge.pk)
    customer = customer_for_user(charge.user)
    try:
        intents: Iterable[stripe.PaymentIntent] | None = None
        if customer is not None:
            try:
                intents = list(
                    stripe.PaymentIntent.list(customer=customer.id, limit=100, api_key=_key()).auto_paging_iter()
                )
            except stripe.InvalidRequestError:
                if not is_local_stripe():
                    raise
                intents = None
        if intents is None:
            intents = stripe.PaymentIntent.list(limit=100, api_key=_key()).auto_paging_iter()
        for pi in intents:
            if str(_as_dict(_get(pi, "metadata")).get("charge_id")) == wanted:
                return pi
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc
    return None


def refund_payment_intent(*, payment_intent_id: str, amount_minor: int, idempotency_key: str, charge_id: int) -> str:
    """Refund part or all of a succeeded intent; returns the refund id. The caller caps the
    amount: localstripe accepts refunds beyond the amount charged."""
    try:
        refund = stripe.Refund.create(
            payment_intent=payment_intent_id,
            amount=amount_minor,
            metadata={"charge_id": str(charge_id)},
            idempotency_key=idempotency_key,
            max_network_retries=0,
            api_key=_key(),
        )
    except stripe.StripeError as exc:
        logger.warning(
            "stripe_refund_failed charge=%s pi=%s error=%s", charge_id, payment_intent_id, type(exc).__name__
        )
        raise _gateway_error(exc) from exc
    logger.info(
        "stripe_refund charge=%s pi=%s refund=%s amount=%s", charge_id, payment_intent_id, refund["id"], amount_minor
    )
    return str(refund["id"])


def refunded_total(payment_intent_id: str) -> int:
    """What the processor has refunded of this intent (minor units), succeeded or on its way, by
    its own list of refunds: the truth a refund whose answer we lost is reconciled against, and
    what lets a refund be made exactly once where the processor ignores idempotency keys
    (localstripe). Raises GatewayError if it cannot be asked: never guessed."""
    try:
        refunds = stripe.Refund.list(payment_intent=payment_intent_id, limit=100, api_key=_key()).auto_paging_iter()
        return sum(
            int(_get(refund, "amount") or 0)
            for refund in refunds
            if (_get(refund, "status") or "succeeded") not in ("failed", "canceled")
        )
    except stripe.StripeError as exc:
        raise _gateway_error(exc) from exc


# --- webhooks ----------------------------------------------------------------------------------------


def register_local_webhook(*, url: str, secret: str, name: str = "esimsite") -> None:
    """Tell localstripe to deliver events to `url`, signed with `secret` (its /_config API;
    real Stripe endpoints are configured in the dashboard)."""
    import requests

    if not is_local_stripe():
        raise GatewayError(_("Webhooks are configured in the Stripe dashboard in production."))
    response = requests.post(
        f"{settings.STRIPE_API_BASE.rstrip('/')}/_config/webhooks/{name}",
        json={"url": url, "secret": secret},
        timeout=settings.STRIPE_HTTP_TIMEOUT_SECONDS,
    )
    response.raise_for_status()


# --- errors ------------------------------------------------------------------------------------------


def _gateway_error(exc: stripe.StripeError) -> GatewayError:
    code = getattr(exc, "code", "") or ""
    if isinstance(exc, stripe.CardError) or code == "card_declined":
        return GatewayError(
            _("Your card was declined. Nothing was saved; please use another card."),
            code=code or "card_declined",
            declined=True,
        )
    if isinstance(exc, (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError)):
        return GatewayError(
            _("The payment processor did not answer. Nothing was saved; please try again."),
            code=f"processor_{type(exc).__name__}",
            unknown=True,
        )
    if isinstance(exc, stripe.InvalidRequestError):
        return GatewayError(
            _("The payment processor refused the request: %(reason)s") % {"reason": exc.user_message or code},
            code=code,
            declined=True,
        )
    return GatewayError(_("The payment processor refused the request."), code=code or type(exc).__name__)
