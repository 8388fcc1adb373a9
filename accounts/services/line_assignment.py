"""An operator gives a line to a customer (docs/catalogue.md, "Operators"): the customer found by
email or phone, the line created with the package's data and validity (or the operator's figures),
history written, and the customer told by a `line_added` notice after the commit."""

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

import phonenumbers
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ..history import acting, record_change
from ..models import Line, Package, User
from . import notices

logger = logging.getLogger(__name__)


class AssignmentRefused(Exception):
    """The line cannot be assigned as asked; the message says why, for the operator's form."""


def find_customer(identifier: str) -> User:
    """The customer with this email address (any case) or phone number (E.164, "+8613800138000";
    spaces and dashes allowed). AssignmentRefused when there is none."""
    text = (identifier or "").strip()
    if "@" in text:
        user = User.objects.filter(email__iexact=text).first()
    else:
        try:
            number = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            raise AssignmentRefused(
                _("Enter an email address or a phone number in international form, such as +8613800138000.")
            ) from None
        user = User.objects.filter(
            phone=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        ).first()
    if user is None:
        raise AssignmentRefused(
            _("No customer has the email address or phone number %(customer)s.") % {"customer": text}
        )
    return user


@dataclass(frozen=True)
class Assignment:
    """What the operator confirms: the line and its package's figures as they will be written."""

    owner: User
    package: Package
    iccid: str
    smdp_address: str
    matching_id: str
    label: str
    data_bytes: int
    starts_at: datetime
    expires_at: datetime


def plan_assignment(
    *,
    owner: User,
    package: Package,
    iccid: str,
    smdp_address: str,
    matching_id: str,
    label: str,
    data_bytes: int | None,
    starts_on: date,
    validity_days: int | None,
    zone: tzinfo,
    now: datetime,
) -> Assignment:
    """The assignment as it would be written (no write): data and validity default to the package's;
    validity starts at the beginning of `starts_on` in the operator's zone."""
    starts_at = datetime.combine(starts_on, time.min, tzinfo=zone)
    expires_at = starts_at + timedelta(days=validity_days or package.validity_days)
    if expires_at <= now:
        raise AssignmentRefused(_("This validity would already be over: choose a later start date."))
    if Line.objects.filter(iccid=iccid).exists():
        raise AssignmentRefused(_("This ICCID is already imported."))
    return Assignment(
        owner=owner,
        package=package,
        iccid=iccid,
        smdp_address=smdp_address,
        matching_id=matching_id,
        label=label,
        data_bytes=package.data_allowance_bytes if data_bytes is None else data_bytes,
        starts_at=starts_at,
        expires_at=expires_at,
    )


def assign_line(*, assignment: Assignment, actor, reason: str, now: datetime) -> Line:
    """Create the customer's line as confirmed, its history and the customer's notice, in one
    transaction. The line starts active, as a line whose first package was applied does
    (apply_package): a new line is on at the network already, so no command is written."""
    a = assignment
    try:
        with transaction.atomic(), acting(actor, reason=reason):  # the creation's history row is the operator's
            line = Line.objects.create(
                owner=a.owner,
                iccid=a.iccid,
                smdp_address=a.smdp_address,
                matching_id=a.matching_id,
                label=a.label,
                package=a.package,
                status=Line.Status.ACTIVE,
                data_remaining_bytes=a.data_bytes,
                expires_at=a.expires_at,
                package_started_at=a.starts_at,
                activated_at=a.starts_at,
            )
            record_change(
                obj=line,
                action="assigned",
                actor=actor,
                reason=reason,
                after={
                    "owner": a.owner.pk,
                    "package": a.package.pk,
                    "data_bytes": a.data_bytes,
                    "valid_from": a.starts_at.isoformat(),
                    "valid_until": a.expires_at.isoformat(),
                },
                now=now,
            )
            notices.owe_lines_added(lines=[line], now=now)
    except IntegrityError:
        raise AssignmentRefused(_("This ICCID is already imported.")) from None
    logger.info(
        "line_assigned line=%s owner=%s package=%s data_bytes=%s expires_at=%s operator=%s",
        line.pk,
        a.owner.pk,
        a.package.pk,
        a.data_bytes,
        a.expires_at.isoformat(),
        getattr(actor, "pk", None),
    )
    return line
