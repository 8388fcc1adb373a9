"""Stripe webhooks: pruning stored webhook requests, and the local (localstripe) endpoint."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

from .. import gateways

if TYPE_CHECKING:
    from djstripe.models import WebhookEndpoint

logger = logging.getLogger(__name__)


LOCAL_WEBHOOK_ENDPOINT_ID = "we_localstripe"
INVALID_WEBHOOK_TRIGGER_RETENTION_DAYS = 1


def prune_webhook_triggers(*, now: datetime | None = None) -> tuple[int, int]:
    """Delete stored webhook requests (dj-stripe's WebhookEventTrigger, raw bodies and headers):
    those that failed validation after a day, the others after
    STRIPE_WEBHOOK_TRIGGER_RETENTION_DAYS. Their Events stay, so a redelivery is still a
    duplicate. Returns (invalid deleted, valid deleted)."""
    from djstripe.models import WebhookEventTrigger

    now = now or timezone.now()
    invalid, _by_model = WebhookEventTrigger.objects.filter(
        valid=False, created__lt=now - timedelta(days=INVALID_WEBHOOK_TRIGGER_RETENTION_DAYS)
    ).delete()
    valid, _by_model = WebhookEventTrigger.objects.filter(
        valid=True, created__lt=now - timedelta(days=settings.STRIPE_WEBHOOK_TRIGGER_RETENTION_DAYS)
    ).delete()
    logger.info("webhook_triggers_pruned invalid=%s valid=%s", invalid, valid)
    return invalid, valid


def configure_local_webhook_endpoint(*, base_url: str, register: bool = True) -> WebhookEndpoint:
    """Development and tests: the dj-stripe endpoint row (holding the signing secret) and
    localstripe's delivery to it. Real Stripe endpoints are created in the dashboard and synced."""
    from djstripe.models import Account, WebhookEndpoint

    gateways.ensure_local_owner_account()
    account = Account.objects.get(id=gateways.LOCAL_ACCOUNT_ID)
    endpoint, _created = WebhookEndpoint.objects.get_or_create(
        id=LOCAL_WEBHOOK_ENDPOINT_ID,
        defaults={
            "url": base_url,
            "secret": settings.STRIPE_WEBHOOK_SECRET,
            "enabled_events": ["*"],
            "status": "enabled",
            "api_version": "",
            "livemode": False,
            "djstripe_owner_account": account,
        },
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


def reverse_webhook_path(endpoint: WebhookEndpoint) -> str:
    from django.urls import reverse

    return reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": endpoint.djstripe_uuid})
