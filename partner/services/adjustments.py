"""An operator's correction of a line's usage (docs/usage.md, "Operator corrections"). Usage
records are never edited or deleted: a correction is a new, signed `UsageAdjustment` row, applied
to the line's current package period by the same accounting as the partner's usage
(`usage.settle_usage`), in one transaction with the line's state, its network command and its
history.

- More usage (positive bytes) is usage: it lowers the remaining data, may cross zero (the overage
  policy: overage, `block_data`), moves the usage notices and is seen by the renewal triggers.
- Usage given back (negative bytes) pays back the owed overage first, then raises the remaining
  data; the data switch is lifted (`unblock_data`) when the line is no longer out of data under its
  policy. It can never give back more than the period's usage (records charged to the current
  package plus the corrections already made in it), so a credit creates no data nobody used.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Sum
from django.utils.translation import gettext as _

from accounts import history
from accounts.models import Line, UsageAdjustment, UsageRecord
from accounts.services import notices
from accounts.services.line_status import begin_transition, write_commands
from renewals.models import RenewalRule

from . import usage
from .usage import LineChange, LineState, RuleOverage

logger = logging.getLogger(__name__)


class AdjustmentRefused(Exception):
    """The correction cannot be made; the message says why (shown to the operator)."""


@dataclass(frozen=True)
class AdjustmentPreview:
    before: LineChange
    after: LineChange
    period_usage: int


def _state(line: Line) -> LineState:
    return LineState(
        pk=line.pk,
        iccid=line.iccid,
        status=line.status,
        data_remaining_bytes=line.data_remaining_bytes,
        data_used_bytes=line.data_used_bytes,
        overage_bytes=line.overage_bytes,
        usage_notice_level=line.usage_notice_level,
        package_id=line.package_id,
        package_allowance_bytes=line.package.data_allowance_bytes if line.package_id else None,
        data_blocked=line.data_blocked,
        package_started_at=line.package_started_at,
    )


def period_usage(line: Line) -> int:
    """The usage charged to the line's current package: its records charged to it (the ingestion's
    rule, usage.charged_to_current_package) plus the corrections made since it began."""
    records = UsageRecord.objects.filter(line=line, charged=True)
    adjustments = UsageAdjustment.objects.filter(line=line)
    if line.package_started_at is not None:
        records = records.filter(period_end__gte=line.package_started_at)
        adjustments = adjustments.filter(created_at__gte=line.package_started_at)
    return (records.aggregate(total=Sum("bytes"))["total"] or 0) + (
        adjustments.aggregate(total=Sum("bytes"))["total"] or 0
    )


def settle_credit(*, line: LineState, rule: RuleOverage | None, credit_bytes: int) -> LineChange:
    """The line after `credit_bytes` of its usage are given back: owed overage first, then the
    remaining data. The data switch is lifted only if the line is no longer exhausted under its
    policy (`usage.settle_usage`'s rule); an out-of-data line whose data is back is active."""
    paid_back = min(credit_bytes, line.overage_bytes)
    overage = line.overage_bytes - paid_back
    remaining = max(line.data_remaining_bytes, 0) + credit_bytes - paid_back
    policy = rule.overage_policy if rule is not None else RenewalRule.OveragePolicy.BLOCK
    cap = (rule.overage_cap_mb or 0) * usage.MB if rule is not None else 0
    exhausted = remaining == 0 and (policy == RenewalRule.OveragePolicy.BLOCK or overage >= cap)
    data_blocked = (line.data_blocked or line.status == Line.Status.DATA_EXHAUSTED) and exhausted
    status = line.status
    if status == Line.Status.DATA_EXHAUSTED and not data_blocked:
        status = Line.Status.ACTIVE
    return LineChange(
        remaining=remaining,
        used=max(line.data_used_bytes - credit_bytes, 0),
        overage=overage,
        status=status,
        notice_level=line.usage_notice_level,
        data_blocked=data_blocked,
    )


def _settle(*, line: Line, bytes: int) -> AdjustmentPreview:
    if bytes == 0:
        raise AdjustmentRefused(_("A correction of 0 bytes changes nothing."))
    if line.status == Line.Status.TERMINATED:
        raise AdjustmentRefused(_("The line is terminated: nothing moves a terminated line."))
    state = _state(line)
    rule = RenewalRule.objects.filter(line=line).values_list("overage_policy", "overage_cap_mb").first()
    overage_rule = RuleOverage(*rule) if rule else None
    used_in_period = period_usage(line)
    if bytes < 0:
        if -bytes > used_in_period:
            raise AdjustmentRefused(
                _("At most %(bytes)d bytes can be given back: the usage charged to the current package.")
                % {"bytes": used_in_period}
            )
        after = settle_credit(line=state, rule=overage_rule, credit_bytes=-bytes)
    else:
        after = usage.settle_usage(line=state, rule=overage_rule, used_bytes=bytes)
    return AdjustmentPreview(before=LineChange.unchanged(state), after=after, period_usage=used_in_period)


def preview_adjustment(*, line_id: int, bytes: int) -> AdjustmentPreview:
    """What the correction would do, for the confirmation page (writes nothing)."""
    return _settle(line=Line.objects.select_related("package").get(pk=line_id), bytes=bytes)


def adjust_usage(*, line_id: int, bytes: int, reason: str, actor, now: datetime) -> UsageAdjustment:
    """Record and apply an operator's correction; raises AdjustmentRefused (nothing written)."""
    reason = (reason or "").strip()
    if not reason:
        raise AdjustmentRefused(_("A correction needs a reason."))
    if getattr(actor, "pk", None) is None:
        raise AdjustmentRefused(_("A correction is signed by an operator."))
    with transaction.atomic():
        line = Line.objects.select_for_update(of=("self",)).select_related("package").get(pk=line_id)
        result = _settle(line=line, bytes=bytes)
        after = result.after
        network_before = begin_transition(line)
        adjustment = UsageAdjustment.objects.create(
            line=line,
            bytes=bytes,
            reason=reason,
            operator=actor,
            package=line.package,
            period_started_at=line.package_started_at,
            created_at=now,
        )
        line.data_remaining_bytes = after.remaining
        line.data_used_bytes = after.used
        line.overage_bytes = after.overage
        line.status = after.status
        line.data_blocked = after.data_blocked
        line.usage_notice_level = after.notice_level
        with history.acting(actor, action="usage_adjusted", reason=reason):
            line.save(
                update_fields=[
                    "data_remaining_bytes",
                    "data_used_bytes",
                    "overage_bytes",
                    "status",
                    "data_blocked",
                    "usage_notice_level",
                    "updated_at",
                ]
            )
        write_commands(line=line, before=network_before, reason="usage corrected by an operator", now=now)
        before = result.before
        history.record_change(
            obj=line,
            action="usage_adjusted",
            actor=actor,
            reason=reason,
            now=now,
            before={
                "data_remaining_bytes": before.remaining,
                "data_used_bytes": before.used,
                "overage_bytes": before.overage,
                "data_blocked": before.data_blocked,
            },
            after={
                "bytes": bytes,
                "adjustment": adjustment.pk,
                "data_remaining_bytes": after.remaining,
                "data_used_bytes": after.used,
                "overage_bytes": after.overage,
                "data_blocked": after.data_blocked,
            },
        )
        if after.notice_level > before.notice_level:
            notices.owe_usage_notices(levels={line.pk: after.notice_level}, now=now)
    logger.info(
        "usage_adjusted line=%s bytes=%s operator=%s remaining=%s->%s overage=%s->%s status=%s->%s",
        line.pk,
        bytes,
        actor.pk,
        before.remaining,
        after.remaining,
        before.overage,
        after.overage,
        before.status,
        after.status,
    )
    if bytes > 0:
        usage._evaluate_triggers(line_ids=[line.pk], now=now)  # like a usage batch: after the commit
    return adjustment
