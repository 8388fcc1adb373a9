"""Lines and packages: applying what the customer paid for."""
import logging
from datetime import datetime, timedelta

from django.db import transaction

from ..models import Line, Package
from .line_status import begin_transition, write_commands

logger = logging.getLogger(__name__)


class LineTerminated(Exception):
    """A package cannot be applied to a terminated line."""


RESUMABLE = (Line.Status.INACTIVE, Line.Status.DATA_EXHAUSTED, Line.Status.SUSPENDED, Line.Status.EXPIRED)


@transaction.atomic
def apply_package(*, line: Line, package: Package, now: datetime, overage_billed: bool = False) -> Line:
    """Add the package to the line (DESIGN.md invariant 6). Callers that also mark a renewal or a
    charge succeeded call this inside their own transaction, so both commit or neither does.

    Overage is settled here: deducted from the new allowance, unless it was billed with the charge.
    """
    line = Line.objects.select_for_update().get(pk=line.pk)
    return apply_package_to_locked_line(line=line, package=package, now=now, overage_billed=overage_billed)


def apply_package_to_locked_line(*, line: Line, package: Package, now: datetime, overage_billed: bool = False) -> Line:
    """apply_package for a caller that already holds `line`'s row lock (SELECT ... FOR UPDATE) in
    its open transaction: the renewal engine, which reads the line's state before applying.

    The network commands the change implies (resume, unblock_data) are written here, in the
    caller's transaction: every path that takes money for a line restores it the same way. An
    operator's suspension outranks a payment: the line gets its data and validity and stays
    suspended (docs/line-states.md)."""
    if line.status == Line.Status.TERMINATED:
        raise LineTerminated(line.pk)
    network_before = begin_transition(line)
    remaining = max(line.data_remaining_bytes, 0) + package.data_allowance_bytes
    if not overage_billed:
        remaining = max(remaining - line.overage_bytes, 0)
    previous_status = line.status
    line.data_remaining_bytes = remaining
    line.overage_bytes = 0
    new_end = now + timedelta(days=package.validity_days)
    line.expires_at = max(line.expires_at, new_end) if line.expires_at else new_end
    line.package = package
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
    logger.info(
        "package_applied line=%s package=%s status=%s->%s remaining=%s expires_at=%s",
        line.pk, package.pk, previous_status, line.status, remaining, line.expires_at.isoformat(),
    )
    return line
