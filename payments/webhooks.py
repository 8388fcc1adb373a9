"""Stripe events (through dj-stripe's signed webhook endpoint) that settle our charges: a
payment finished in the browser after the customer left, a SEPA debit that settled days later.

An event is only a hint that something changed (docs/threat-model.md): its payload is never
trusted. The charge is found by the PaymentIntent id we stored on it, the intent is read back
from Stripe by that id with our secret key, and only what Stripe says now is recorded. An event
naming an intent we never stored, or whose ids disagree with our row or with Stripe's intent,
changes nothing and is logged at ERROR (`webhook_event_rejected`) for the operator. dj-stripe
stores each event once, so a duplicate runs these receivers only the first time, and a settled
charge never changes again (services.recording.record_outcome)."""

import logging

import stripe
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from djstripe import signals as djstripe_signals
from djstripe.event_handlers import djstripe_receiver
from djstripe.models import WebhookEndpoint, WebhookEventTrigger
from djstripe.views import ProcessWebhookView

from . import gateways
from .models import Charge
from .services import recording, refunds

logger = logging.getLogger(__name__)

# dj-stripe lets this header replace the endpoint's signing secret whenever DEBUG is on (for the
# Stripe CLI). Anyone could then sign their own events: it is never honoured, in any settings.
SECRET_OVERRIDE_HEADER = "x-djstripe-webhook-secret"


@receiver(djstripe_signals.webhook_pre_validate)
def drop_secret_override_header(sender, instance, **kwargs):
    for name in [name for name in instance.headers if name.lower() == SECRET_OVERRIDE_HEADER]:
        logger.error("webhook_secret_override_refused trigger=%s ip=%s", instance.pk, instance.remote_ip)
        del instance.headers[name]


class CappedWebhookView(ProcessWebhookView):
    """dj-stripe's endpoint, with the body size capped before dj-stripe stores anything: it saves
    every body before checking its signature, so unsigned megabytes would otherwise fill the
    table (old triggers are pruned by payments.prune_webhook_triggers)."""

    def post(self, request, uuid):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > settings.STRIPE_WEBHOOK_MAX_BODY_BYTES:
            logger.warning(
                "webhook_body_refused length=%s limit=%s ip=%s",
                request.META.get("CONTENT_LENGTH"),
                settings.STRIPE_WEBHOOK_MAX_BODY_BYTES,
                request.META.get("REMOTE_ADDR"),
            )
            status = 413 if length > 0 else 400
            return JsonResponse(
                {"error": _("The request body is too large.") if status == 413 else _("Bad request.")}, status=status
            )
        try:
            return self._process(request, uuid)
        except stripe.InvalidRequestError as exc:
            # dj-stripe re-reads the event's object from Stripe first and Stripe refused (an id it
            # does not know: forged). Nothing was processed: a logged 400, not a 500. (With real
            # Stripe, dj-stripe skips a 'resource_missing' object and our receiver refuses it.)
            logger.error(
                "webhook_event_rejected reason=object_unknown_at_processor status=%s ip=%s",
                getattr(exc, "http_status", ""),
                request.META.get("REMOTE_ADDR"),
            )
            return JsonResponse(
                {"error": _("The event names an object the payment processor does not know.")}, status=400
            )

    def _process(self, request, uuid):
        # dj-stripe's ProcessWebhookView.post (2.11), but the endpoint's secret is the one of
        # STRIPE_WEBHOOK_SECRET / STRIPE_WEBHOOK_SECRET_PREVIOUS that signed the request: a
        # rotation has no window where Stripe's signature is refused. The endpoint is not saved.
        if "stripe-signature" not in request.headers:
            return super().post(request, uuid)  # refused before anything is stored
        endpoint = get_object_or_404(WebhookEndpoint, djstripe_uuid=uuid)
        endpoint.secret = _signing_secret(request, endpoint)
        trigger = WebhookEventTrigger.from_request(request, webhook_endpoint=endpoint)
        if not trigger.valid:
            logger.error("webhook_signature_refused trigger=%s ip=%s", trigger.pk, request.META.get("REMOTE_ADDR"))
            return HttpResponseBadRequest()
        return HttpResponse(str(trigger.id))


def _signing_secret(request, endpoint) -> str:
    """The current secret, or the previous one if that is what signed this request. dj-stripe then
    verifies (and records) as usual; an unsigned or wrongly signed request fails there."""
    try:
        payload = request.body.decode(request.encoding or "utf-8")
    except UnicodeDecodeError:
        return settings.STRIPE_WEBHOOK_SECRET
    header = request.headers.get("stripe-signature", "")
    previous = settings.STRIPE_WEBHOOK_SECRET_PREVIOUS
    if not previous or previous == settings.STRIPE_WEBHOOK_SECRET:
        return settings.STRIPE_WEBHOOK_SECRET
    for secret in (settings.STRIPE_WEBHOOK_SECRET, previous):
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, endpoint.djstripe_tolerance)
        except stripe.SignatureVerificationError:
            continue
        if secret == previous:
            logger.info("webhook_signed_with_previous_secret endpoint=%s", endpoint.id)
        return secret
    return settings.STRIPE_WEBHOOK_SECRET


def _reject(event, reason: str, *, intent_id: str = "", charge: Charge | None = None, claimed: str = "") -> None:
    # No Alert row: renewals.Alert belongs to a line and this may name none; operators watch ERROR.
    logger.error(
        "webhook_event_rejected event=%s type=%s reason=%s pi=%s charge=%s claimed_charge=%r",
        event.id,
        event.type,
        reason,
        intent_id,
        charge.pk if charge else "",
        claimed[:32],
    )


def _intent_disagrees(intent, charge: Charge) -> str:
    """Why the intent Stripe returned cannot be this charge's, or ''."""
    metadata = gateways._as_dict(gateways._get(intent, "metadata"))
    if charge.payment_intent_id and gateways._get(intent, "id") != charge.payment_intent_id:
        return "intent_id_mismatch"
    if str(metadata.get("charge_id") or "") != str(charge.pk):
        return "metadata_mismatch"
    if (
        gateways._get(intent, "amount") != charge.amount_minor
        or (gateways._get(intent, "currency") or "").upper() != charge.currency
    ):
        return "amount_mismatch"
    return ""


@djstripe_receiver(
    [
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.processing",
        "payment_intent.requires_action",
    ]
)
def settle_charge_from_payment_intent_event(sender, event, **kwargs):
    payload = (event.data or {}).get("object") or {}
    intent_id = str(payload.get("id") or "")
    claimed = str((payload.get("metadata") or {}).get("charge_id") or "")
    charge = Charge.objects.filter(payment_intent_id=intent_id).first() if intent_id.startswith("pi_") else None
    if charge is None:
        candidate = Charge.objects.filter(pk=int(claimed)).first() if claimed.isdigit() and len(claimed) < 19 else None
        if candidate is None or candidate.payment_intent_id:
            _reject(
                event,
                "unknown_intent" if candidate is None else "intent_id_mismatch",
                intent_id=intent_id,
                charge=candidate,
                claimed=claimed,
            )
            return
        # The intent was created but our process died before it stored the id: reconciliation
        # looks the intent up at Stripe by the metadata we wrote, not by what the event says.
        charge = candidate
    elif claimed and claimed != str(charge.pk):
        _reject(event, "metadata_mismatch", intent_id=intent_id, charge=charge, claimed=claimed)
        return
    try:
        intent = gateways.find_payment_intent_for_charge(charge)
    except gateways.GatewayError as exc:
        # Never settle from the payload: the charge stays as it is and reconciliation asks later.
        logger.warning(
            "webhook_intent_unreadable event=%s charge=%s pi=%s code=%s", event.id, charge.pk, intent_id, exc.code
        )
        return
    if intent is None:
        _reject(event, "no_intent_at_processor", intent_id=intent_id, charge=charge, claimed=claimed)
        return
    reason = _intent_disagrees(intent, charge) or (
        "intent_id_mismatch" if gateways._get(intent, "id") != intent_id else ""
    )
    if reason:
        _reject(event, reason, intent_id=intent_id, charge=charge, claimed=claimed)
        return
    outcome = gateways.outcome_from_payment_intent(intent)
    logger.info(
        "webhook_intent event=%s type=%s charge=%s pi=%s outcome=%s",
        event.id,
        event.type,
        charge.pk,
        intent_id,
        outcome.kind.value,
    )
    if outcome.kind in (gateways.OutcomeKind.PENDING, gateways.OutcomeKind.PROCESSOR_ERROR):
        return
    recording.record_outcome(charge_id=charge.pk, outcome=outcome)


@djstripe_receiver(["charge.refunded", "charge.refund.updated"])
def reconcile_refunds_from_charge_event(sender, event, **kwargs):
    """A refund made or changed at the processor (ours after a lost answer, or one from the
    dashboard): the event only says which payment; the amount is read back from the processor
    (refunds.reconcile_refunds), so a forged or stale event cannot move the ledger."""
    payload = (event.data or {}).get("object") or {}
    intent_id = payload.get("payment_intent") or ""
    if isinstance(intent_id, dict):
        intent_id = intent_id.get("id") or ""
    charge = Charge.objects.filter(payment_intent_id=intent_id).first() if intent_id else None
    if charge is None:
        logger.info("webhook_refund_unmatched event=%s pi=%s", event.id, intent_id)
        return
    charge = refunds.reconcile_refunds(charge_id=charge.pk)
    logger.info(
        "webhook_refund event=%s type=%s charge=%s refunded=%s status=%s",
        event.id,
        event.type,
        charge.pk,
        charge.refunded_minor,
        charge.status,
    )
