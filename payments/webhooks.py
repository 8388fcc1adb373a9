"""Stripe events (through dj-stripe's signed webhook endpoint) that settle our charges: a
payment finished in the browser after the customer left, a SEPA debit that settled days later.
dj-stripe stores each event once, so a duplicate runs these receivers only the first time; the
current PaymentIntent is read back, so events arriving out of order settle to Stripe's latest
state; and a settled charge never changes again (services.record_outcome)."""
import logging

from djstripe.event_handlers import djstripe_receiver

from . import gateways, services
from .models import Charge

logger = logging.getLogger(__name__)


@djstripe_receiver([
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.processing",
    "payment_intent.requires_action",
])
def settle_charge_from_payment_intent_event(sender, event, **kwargs):
    payload = (event.data or {}).get("object") or {}
    intent_id = payload.get("id") or ""
    charge_id = (payload.get("metadata") or {}).get("charge_id") or ""
    charge = Charge.objects.filter(payment_intent_id=intent_id).first() if intent_id else None
    if charge is None and charge_id.isdigit():
        # The intent was created but our process died before it stored the id.
        charge = Charge.objects.filter(pk=int(charge_id)).first()
    if charge is None:
        logger.info("webhook_intent_unmatched event=%s pi=%s", event.id, intent_id)
        return
    try:
        intent = gateways.retrieve_payment_intent(intent_id)
    except gateways.GatewayError:
        intent = payload
    outcome = gateways.outcome_from_payment_intent(intent)
    logger.info("webhook_intent event=%s type=%s charge=%s pi=%s outcome=%s", event.id, event.type, charge.pk, intent_id,
                outcome.kind.value)
    if outcome.kind in (gateways.OutcomeKind.PENDING, gateways.OutcomeKind.PROCESSOR_ERROR):
        return
    services.record_outcome(charge_id=charge.pk, outcome=outcome)


@djstripe_receiver(["charge.refunded", "charge.refund.updated"])
def reconcile_refunds_from_charge_event(sender, event, **kwargs):
    """A refund made or changed at the processor (ours after a lost answer, or one from the
    dashboard): the event only says which payment; the amount is read back from the processor
    (services.reconcile_refunds), so a forged or stale event cannot move the ledger."""
    payload = (event.data or {}).get("object") or {}
    intent_id = payload.get("payment_intent") or ""
    if isinstance(intent_id, dict):
        intent_id = intent_id.get("id") or ""
    charge = Charge.objects.filter(payment_intent_id=intent_id).first() if intent_id else None
    if charge is None:
        logger.info("webhook_refund_unmatched event=%s pi=%s", event.id, intent_id)
        return
    charge = services.reconcile_refunds(charge_id=charge.pk)
    logger.info("webhook_refund event=%s type=%s charge=%s refunded=%s status=%s", event.id, event.type, charge.pk,
                charge.refunded_minor, charge.status)
