"""Lines and packages: applying what the customer paid for."""

import logging
from datetime import datetime, timedelta

from django.db import transaction

from .. import metrics
from ..models import Line, Package
from .line_status import begin_transition, write_commands

logger = logging.getLogger(__name__)


class LineTerminated(Exception):
    """A package cannot be applied to a terminated line."""


RESUMABLE = (Line.Status.INACTIVE, Line.Status.DATA_EXHAUSTED, Line.Status.SUSPENDED, Line.Status.EXPIRED)


@transaction.atomic
def apply_package(*, line: Line, package: Package, now: datetime, overage_billed_bytes: int = 0) -> Line:
    """Add the package to the line (docs/invariants.md #6). Callers that also mark a renewal or a
    charge succeeded call this inside their own transaction, so both commit or neither does.

    Overage is settled here and conserved (docs/money.md): the bytes the charge billed are cleared,
    the rest is deducted from the new allowance as far as it goes and stays owed beyond it.
    """
    line = Line.objects.select_for_update().get(pk=line.pk)
    return apply_package_to_locked_line(line=line, package=package, now=now, overage_billed_bytes=overage_billed_bytes)


def apply_package_to_locked_line(*, line: Line, package: Package, now: datetime, overage_billed_bytes: int = 0) -> Line:
    """apply_package for a caller that already holds `line`'s row lock (SELECT ... FOR UPDATE) in
    its open transaction: the renewal engine, which reads the line's state before applying.

    The network commands the change implies (resume, unblock_data) are written here, in the
    caller's transaction: every path that takes money for a line restores it the same way. An
    operator's suspension outranks a payment: the line gets its data and validity and stays
    suspended (docs/line-states.md)."""
    if line.status == Line.Status.TERMINATED:
        raise LineTerminated(line.pk)
    network_before = begin_transition(line)
    # used = granted + billed + owed: only what the charge billed is cleared (usage after the
    # renewal was priced is not in it); the rest comes out of the allowance, and what the
    # allowance cannot cover stays owed for the next package.
    billed = max(overage_billed_bytes, 0)
    cleared = min(billed, line.overage_bytes)
    # Billed bytes no longer owed were settled by a package applied since the renewal froze its
    # terms (a purchase in between took them from its allowance): paid twice otherwise, so they go
    # back to the allowance (docs/money.md). Overage only ever decreases here.
    credited = billed - cleared
    remaining = max(line.data_remaining_bytes, 0) + package.data_allowance_bytes + credited
    owed = line.overage_bytes - cleared
    deducted = min(owed, remaining)
    remaining -= deducted
    previous_status = line.status
    line.data_remaining_bytes = remaining
    line.overage_bytes = owed - deducted
    new_end = now + timedelta(days=package.validity_days)
    line.expires_at = max(line.expires_at, new_end) if line.expires_at else new_end
    line.package = package
    line.package_started_at = now  # usage that ended before this is the previous package's (docs/usage.md)
    line.usage_notice_level = 0
    line.expiry_notice_sent = False
    # A package that leaves nothing after the overage it settles does not unblock the data.
    line.data_blocked = line.data_blocked and remaining <= 0
    if line.status == Line.Status.SUSPENDED and line.suspended_by_operator:
        pass  # precedence: only the operator lifts their suspension
    elif line.status in RESUMABLE or line.status == Line.Status.ACTIVE:
        line.status = Line.Status.DATA_EXHAUSTED if line.data_blocked else Line.Status.ACTIVE
        line.suspended_from = ""
    if line.activated_at is None:
        line.activated_at = now
    line.save()
    write_commands(line=line, before=network_before, reason=f"package {package.pk} applied", now=now)
    if previous_status == Line.Status.SUSPENDED and line.status != Line.Status.SUSPENDED:
        metrics.count_on_commit(metrics.LINE_RESTORATIONS, by="payment")
    logger.info(
        "package_applied line=%s package=%s status=%s->%s remaining=%s expires_at=%s overage_credited=%s",
        line.pk,
        package.pk,
        previous_status,
        line.status,
        remaining,
        line.expires_at.isoformat(),
        credited,
    )
    return line
