"""The row locks every family takes, in the one order (rule, then renewal, then charge, then line),
and the cancel that runs under them. Private to renewals.services; a caller of these holds the
transaction."""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias, TypedDict

from django.db.models import Exists, OuterRef

from payments.models import Charge

from ..models import Renewal, RenewalRule
from ._base import _log

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _InFlight(TypedDict):
    attempt_in_flight: bool


# A renewal read by _locked_renewal: the model with its `attempt_in_flight` annotation.
LockedRenewal: TypeAlias = "WithAnnotations[Renewal, _InFlight]"
logger = logging.getLogger(__name__)


class _Unknown(enum.Enum):
    """The rule_id a caller has not read (None is a renewal without a rule): a typed sentinel."""

    UNKNOWN = enum.auto()


_UNKNOWN = _Unknown.UNKNOWN


def _locked_renewal(renewal_id: int, *, with_rule: bool = False) -> LockedRenewal:
    """The renewal under its row lock, with `attempt_in_flight` (a pending charge: an attempt at
    the processor or unknown) read in the same statement. of=self: joined rows (the line, the
    package every customer shares, the rule) stay unlocked; the line is locked last, where the
    package is applied."""
    related = ("line", "package", "rule") if with_rule else ("line", "package")
    in_flight = Charge.objects.filter(renewal=OuterRef("pk"), status=Charge.Status.PENDING)
    return (
        Renewal.objects.select_for_update(of=("self",))
        .select_related(*related)
        .annotate(attempt_in_flight=Exists(in_flight))
        .get(pk=renewal_id)
    )


def _lock_rule_and_renewal(
    renewal_id: int, *, rule_id: int | None | _Unknown = _UNKNOWN
) -> tuple[RenewalRule | None, LockedRenewal]:
    """Lock order: the rule first (turning it off takes it first too), then the renewal. A caller
    that has read the renewal already passes its rule_id (a renewal's rule never changes)."""
    if rule_id is _UNKNOWN:
        rule_id = Renewal.objects.filter(pk=renewal_id).values_list("rule_id", flat=True).get()
    rule = (
        RenewalRule.objects.select_for_update(of=("self",)).select_related("package").filter(pk=rule_id).first()
        if rule_id
        else None
    )
    return rule, _locked_renewal(renewal_id)


def _cancel(renewal: Renewal, *, now: datetime, reason: str) -> None:
    previous = renewal.status
    renewal.status = Renewal.Status.CANCELLED
    renewal.completed_at = now
    renewal.next_attempt_at = None
    renewal.last_failure_message = reason
    renewal.save()
    _log("renewal_cancelled", renewal, previous=previous, reason=reason)


def _is_latest(renewal: Renewal) -> bool:
    latest = (
        Renewal.objects.filter(line_id=renewal.line_id)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
        .first()
    )
    return latest == renewal.pk
