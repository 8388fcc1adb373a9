"""Payments' part of closing a customer's account (docs/data-rights.md): open on-session intents
withdrawn, payment methods detached at the processor, the processor's customer stripped of the
person, dj-stripe's mirror of it emptied, and our ledger kept but pseudonymised. Called by
renewals.services.account_closure, which owns the order of the steps."""

from __future__ import annotations

import logging
import re

from django.apps import apps
from django.db import transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast

from accounts.models import User

from .. import gateways
from ..models import Charge
from . import on_session

logger = logging.getLogger(__name__)

# "PayPal (someone@example.com)": the part in brackets names the person; brand and last 4 stay.
_SUMMARY_PERSON = re.compile(r"\s*\(.*@.*\)\s*$")


def withdraw_open_purchases(*, user: User) -> list[int]:
    """Withdraw the customer's purchase intents still waiting for 3-D Secure (renewal intents are
    withdrawn by renewals when their cycle is cancelled). Returns the charges left open: the
    processor did not answer, or the customer is paying right now."""
    left = []
    for charge in Charge.objects.filter(user=user, status=Charge.Status.REQUIRES_ACTION, renewal__isnull=True):
        if on_session.withdraw_open_payment(charge).status == Charge.Status.REQUIRES_ACTION:
            left.append(charge.pk)
    return left


def charges_in_flight(*, user: User) -> list[int]:
    """Charges whose outcome the processor has not given yet (sent, or unknown), and 3-D Secure
    payments still open: while any exists the account is not closed (docs/data-rights.md)."""
    open_statuses = (Charge.Status.PENDING, Charge.Status.REQUIRES_ACTION)
    return list(
        Charge.objects.filter(Q(user=user) | Q(line__owner=user), status__in=open_statuses).values_list("pk", flat=True)
    )


def forget_customer(*, user: User) -> int:
    """Detach every saved method at the processor, empty the processor's customer (email, name,
    phone), and drop dj-stripe's mirror rows of that customer's objects (methods, intents): the
    processor keeps its own records, and our ledger is `Charge`. Returns the methods detached.
    GatewayError when the processor does not answer: nothing is erased here yet, so the closure
    stops and can be asked again."""
    from djstripe.models import Customer, Event, PaymentMethod, WebhookEventTrigger

    customer = gateways.customer_for_user(user)
    if customer is None:
        return 0
    if customer.default_payment_method_id:
        # localstripe keeps a detached method as the default (gateways.detach_payment_method).
        gateways.set_default_payment_method(customer_id=customer.id, payment_method_id=None)
    method_ids = list(PaymentMethod.objects.filter(customer=customer).values_list("id", flat=True))
    for method_id in method_ids:
        gateways.detach_payment_method(method_id)
        logger.info("payment_method_detached user=%s pm=%s reason=account_closed", user.pk, method_id)
    gateways.forget_customer(customer.id)
    with transaction.atomic():
        customers = list(Customer.objects.filter(subscriber=user))
        # Every mirror row that points at the customer (methods, intents, setup intents, charges).
        for model in apps.get_app_config("djstripe").get_models():
            if model is Customer:
                continue
            field = next((f for f in model._meta.concrete_fields if f.name == "customer" and f.is_relation), None)
            if field is not None and field.related_model is Customer:
                model._default_manager.filter(customer__in=customers).delete()
        PaymentMethod.objects.filter(id__in=method_ids).delete()
        # Webhook events and their raw bodies carry the customer's email and card details.
        for stripe_id in [c.id for c in customers]:
            Event.objects.annotate(text=Cast("data", TextField())).filter(text__contains=stripe_id).delete()
            WebhookEventTrigger.objects.filter(body__contains=stripe_id).delete()
        # Emptied rather than deleted: the user row's charges and the processor's customer
        # (kept for its payments) still meet through it.
        Customer.objects.filter(pk__in=[c.pk for c in customers]).update(email="", metadata={}, stripe_data={})
    logger.info("stripe_customer_forgotten user=%s customer=%s methods=%s", user.pk, customer.id, len(method_ids))
    return len(method_ids)


def pseudonymise_charges(*, user: User) -> int:
    """The ledger stays (the law keeps financial records) linked to the erased user row; only a
    method summary that names the person (a PayPal email) loses that part."""
    changed = 0
    for charge in Charge.objects.filter(user=user, payment_method_summary__contains="@"):
        charge.payment_method_summary = _SUMMARY_PERSON.sub("", charge.payment_method_summary) or "—"
        charge.save(update_fields=["payment_method_summary", "updated_at"])
        changed += 1
    return changed
