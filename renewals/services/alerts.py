"""Operator alerts: one open alert per line and kind, raised by the engine and by payments (through
its alert hook, registered in RenewalsConfig.ready)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.models import Line

from ..models import Alert, Renewal

logger = logging.getLogger(__name__)


def raise_alert(*, kind: str, line: Line, message: str, renewal: Renewal | None = None, now: datetime) -> Alert:
    """One open alert per line and kind (a database constraint): a runaway line alerts once."""
    existing = Alert.objects.filter(line=line, kind=kind, resolved_at__isnull=True).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            alert = Alert.objects.create(kind=kind, line=line, renewal=renewal, message=message[:500], created_at=now)
    except IntegrityError:  # raised concurrently by another worker: theirs stands
        return Alert.objects.get(line=line, kind=kind, resolved_at__isnull=True)
    logger.error(
        "renewal_alert kind=%s line=%s renewal=%s message=%s", kind, line.pk, renewal.pk if renewal else None, message
    )
    return alert


def alert_from_payments(*, line_id: int, reason: str, message: str, now: datetime) -> Alert:
    """payments.outcomes' alert hook (registered in RenewalsConfig.ready): money payments gives back
    on its own. A purchase paid for a terminated line alerts as a renewal paid for one does."""
    kind = Alert.Kind.PAID_AFTER_CLOSED if reason == "paid_after_closed" else Alert.Kind.UNRECONCILED_CHARGE
    return raise_alert(kind=kind, line=Line.objects.get(pk=line_id), message=message, now=now)


def resolve_alert(*, alert_id: int, now: datetime) -> bool:
    """An operator has dealt with an alert. False if it was already resolved."""
    resolved = Alert.objects.filter(pk=alert_id, resolved_at__isnull=True).update(resolved_at=now)
    if resolved:
        logger.info("alert_resolved alert=%s", alert_id)
    return bool(resolved)
