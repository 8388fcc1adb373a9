"""The dispatcher: one pass of the engine per tick (beat or `renewals_tick`), in order, stamping
its heartbeat at the end."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from accounts import heartbeats, metrics

from .. import notifications, selectors
from . import alerts, authentications, claims, precedence, reconciliation, suspension, triggers
from ._base import NOTICE_SWEEP_AFTER

logger = logging.getLogger(__name__)


@dataclass
class DispatchReport:
    opened: list[int] = field(default_factory=list)
    claimed: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    reconciled: list[int] = field(default_factory=list)
    # Stale charges handed to workers (enqueue=True); their outcome is recorded by the task.
    reconciling: list[int] = field(default_factory=list)
    suspended: list[int] = field(default_factory=list)
    emails_enqueued: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"opened={len(self.opened)} claimed={len(self.claimed)} requeued={len(self.requeued)} "
            f"reconciled={len(self.reconciled)} reconciling={len(self.reconciling)} suspended={len(self.suspended)} "
            f"emails_enqueued={len(self.emails_enqueued)}"
        )


def run_dispatcher(*, now: datetime, enqueue: bool = True) -> DispatchReport:
    """One beat tick: the trigger sweep (safety net and expiry triggers), suspension after grace,
    reconciliation of unknown outcomes, and the claim of due work. With enqueue=False the caller
    runs the charge step itself (`renewals_tick`), reconciliation included."""
    report = DispatchReport()
    with metrics.DISPATCHER_PASS_SECONDS.time():
        _run_pass(report, now=now, enqueue=enqueue)
    logger.info("renewals_dispatched %s", report)
    return report


def _run_pass(report: DispatchReport, *, now: datetime, enqueue: bool) -> None:
    # Opened renewals are left due: the claim below takes them with the rest of the batch.
    opened = triggers.evaluate_triggers(
        line_ids=selectors.lines_with_enabled_rules_ids(now=now), now=now, dispatch=False
    )
    report.opened = [renewal.pk for renewal in opened]
    report.suspended = suspension.suspend_overdue_lines(now=now)
    precedence.cancel_renewals_of_terminated_lines(now=now)
    precedence.turn_off_rules_of_given_lines(now=now)
    reconciliation.alert_stuck_charges(now=now)
    alerts.close_cleared_alerts(now=now)
    stale = reconciliation.stale_pending_charges(now=now, limit=reconciliation._reconcile_per_tick())
    stale += authentications.abandoned_authentications(
        limit=max(reconciliation._reconcile_per_tick() - len(stale), 0), now=now
    )
    if enqueue:
        # Each look-up is a processor round trip (a list of intents against localstripe): in
        # parallel on the workers, and never between this tick and its claim.
        report.reconciling = reconciliation.enqueue_reconciliations(charge_ids=stale)
    else:
        for charge_id in stale:
            try:
                if reconciliation.reconcile_charge(charge_id=charge_id, now=now) is not None:
                    report.reconciled.append(charge_id)
            except Exception:
                logger.exception("charge_reconcile_error charge=%s", charge_id)
    report.requeued = claims.requeue_lost_claims(now=now)
    report.claimed = claims.claim_due_renewals(now=now)
    if enqueue:
        claims._enqueue_charges(report.requeued + report.claimed)
        # The safety net behind each email's own task: one whose message Redis lost goes out now.
        report.emails_enqueued = notifications.unsent_notice_ids(older_than=now - NOTICE_SWEEP_AFTER)
        notifications.enqueue_notices(report.emails_enqueued)
    heartbeats.beat(heartbeats.DISPATCHER, now=now)
