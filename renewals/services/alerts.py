"""Operator alerts: one open alert per line and kind, raised by the engine and by payments (through
its alert hook, registered in RenewalsConfig.ready)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.history import record_change
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


# What clears each kind (docs/console.md, "Alerts that close themselves"): a failing renewal that
# was paid or withdrawn; a suspension for non-payment that was lifted. The others (caps, unknown
# outcomes, money given back) stay open until an operator has looked.
FAILURE_KINDS = (Alert.Kind.REPEATED_FAILURES, Alert.Kind.RENEWAL_FAILED)
FINISHED_RENEWAL = (Renewal.Status.SUCCEEDED, Renewal.Status.CANCELLED)
LINE_WORKS = (Line.Status.ACTIVE, Line.Status.DATA_EXHAUSTED)


def _close(alerts: list[Alert], *, reason: str, now: datetime) -> int:
    closed = 0
    for alert in alerts:
        if not Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(resolved_at=now):
            continue  # closed meanwhile by an operator or another worker: their history row stands
        alert.resolved_at = now
        record_change(
            obj=alert,
            action="closed_automatically",
            reason=reason,
            before={"resolved_at": None},
            after={"resolved_at": now.isoformat()},
            now=now,
        )
        logger.info("alert_closed alert=%s kind=%s line=%s reason=%s", alert.pk, alert.kind, alert.line_id, reason)
        closed += 1
    return closed


def close_alerts_of_paid_line(*, line: Line, now: datetime) -> int:
    """A renewal of the line succeeded: its failure alerts no longer hold (called in the success's
    transaction, renewals.services.outcomes)."""
    open_alerts = Alert.objects.filter(line=line, kind__in=FAILURE_KINDS, resolved_at__isnull=True)
    return _close(list(open_alerts), reason="renewal paid", now=now)


def close_cleared_alerts(*, now: datetime) -> int:
    """The dispatcher's sweep: failure alerts whose renewal finished, or whose line works again
    (an operator resumed it, or a pay-now restored it), close themselves with a history row."""
    open_alerts = Alert.objects.filter(kind__in=FAILURE_KINDS, resolved_at__isnull=True).select_related(
        "line", "renewal"
    )
    finished, restored = [], []
    for alert in open_alerts:
        if alert.renewal is not None and alert.renewal.status in FINISHED_RENEWAL:
            finished.append(alert)
        elif (
            alert.kind == Alert.Kind.RENEWAL_FAILED
            and alert.renewal is not None
            and alert.renewal.line_suspended_at is not None  # in its grace the line works, unrestored
            and alert.line.status in LINE_WORKS
        ):
            restored.append(alert)
    return _close(finished, reason="renewal paid or withdrawn", now=now) + _close(
        restored, reason="line restored", now=now
    )
