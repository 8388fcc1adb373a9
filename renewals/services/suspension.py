"""Suspension after a failed cycle: authentication windows that ran out, unconfirmed attempts, and
the lines whose grace is over."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction

from accounts.models import Line
from accounts.services import line_status
from payments.gateways import GatewayError
from payments.models import Charge

from .. import notifications
from ..models import Alert, Renewal
from . import alerts, authentications
from ._base import _claim_batch_size, _log

logger = logging.getLogger(__name__)


def _suspend_line_for(*, renewal: Renewal, now: datetime) -> None:
    """The line of a cycle that stayed unpaid is suspended (the line's own transition service
    writes the state and the network command); the renewal records that it did, once."""
    renewal.line_suspended_at = now
    renewal.save(update_fields=["line_suspended_at", "updated_at"])
    previous = line_status.suspend_line_for_payment(
        line_id=renewal.line_id, reason=f"renewal {renewal.pk} failed", now=now
    )
    if previous is None:
        _log(
            "line_not_suspended",
            renewal,
            line_status=Line.objects.values_list("status", flat=True).get(pk=renewal.line_id),
        )
        return
    _log("line_suspended", renewal, line_status_before=previous)
    notifications.notify_later(renewal, notifications.SUSPENDED)


AUTHENTICATION_TIMEOUT = "authentication_timeout"


def _withdraw_overdue_authentications(*, now: datetime) -> None:
    """Before a 3-D Secure cycle fails for time, its PaymentIntent is cancelled at the processor:
    left open, the old email's link could still pay it after a new card had paid the cycle again
    (charged twice). If the customer paid just before, the cancel is refused and the success is
    recorded instead (withdraw_authentication). Processor calls: outside any row lock."""
    charge_ids = list(
        Charge.objects.filter(
            status=Charge.Status.REQUIRES_ACTION,
            renewal__status=Renewal.Status.REQUIRES_ACTION,
            renewal__suspend_at__lte=now,
        )
        .order_by("id")
        .values_list("id", flat=True)[: _claim_batch_size()]
    )
    for charge_id in charge_ids:
        try:
            authentications.withdraw_authentication(charge_id=charge_id, now=now)
        except GatewayError as exc:  # still open: its cycle waits for the next tick, not failed
            logger.warning("authentication_withdraw_unreachable charge=%s code=%s", charge_id, exc.code)


def _fail_unconfirmed(*, now: datetime) -> list[int]:
    """Renewals whose 3-D Secure the customer did not complete in the policy's time fail, exactly
    like a cycle out of retries: alert, line suspended (network command, email). The customer's
    pay-now still works afterwards and resumes the line. Only once no intent of the cycle is still
    open at the processor (`_withdraw_overdue_authentications` ran first)."""
    failed = []
    renewals = list(
        Renewal.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(status=Renewal.Status.REQUIRES_ACTION, suspend_at__lte=now)
        .exclude(charges__status=Charge.Status.REQUIRES_ACTION)
        .select_related("line")[: _claim_batch_size()]
    )
    for renewal in renewals:
        renewal.status = Renewal.Status.FAILED
        renewal.completed_at = now
        renewal.next_attempt_at = None
        renewal.last_failure_code = AUTHENTICATION_TIMEOUT
        renewal.last_failure_message = "The payment was not confirmed with the bank in time."
        renewal.suspend_at = now
        renewal.save()
        _log("renewal_failed", renewal, reason=AUTHENTICATION_TIMEOUT)
        alerts.raise_alert(
            kind=Alert.Kind.RENEWAL_FAILED,
            line=renewal.line,
            renewal=renewal,
            now=now,
            message=f"renewal {renewal.pk} of line {renewal.line_id}: 3-D Secure not completed in time",
        )
        _suspend_line_for(renewal=renewal, now=now)
        failed.append(renewal.pk)
    return failed


def suspend_overdue_lines(*, now: datetime) -> list[int]:
    """Failed renewals whose grace has passed suspend their line (once); so do renewals whose
    3-D Secure was not completed in time, which fail first."""
    done = []
    _withdraw_overdue_authentications(now=now)
    with transaction.atomic():
        done.extend(_fail_unconfirmed(now=now))
        renewals = list(
            Renewal.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=Renewal.Status.FAILED, line_suspended_at__isnull=True, suspend_at__lte=now)
            .select_related("line")[: _claim_batch_size()]
        )
        for renewal in renewals:
            # A later renewal of the line already paid: nothing to suspend for.
            if Renewal.objects.filter(
                line_id=renewal.line_id, status=Renewal.Status.SUCCEEDED, completed_at__gt=renewal.completed_at
            ).exists():
                renewal.line_suspended_at = now
                renewal.save(update_fields=["line_suspended_at", "updated_at"])
                continue
            _suspend_line_for(renewal=renewal, now=now)
            done.append(renewal.pk)
    return done
