"""Lines from the operator's CSV (ICCID, SM-DP+ address, matching id, optional package, optional
owner by email or E.164 phone): every row is checked on its own, the good rows are created, the bad
ones come back with their reasons. An imported line with an owner tells its owner by email
(a `line_added` notice, docs/catalogue.md)."""

import csv
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import phonenumbers
from django.db import transaction
from django.db.models.functions import Lower
from django.utils.translation import gettext as _

from ..history import record_change
from ..models import Line, Package, User
from . import notices

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("iccid", "smdp_address", "matching_id")
MAX_ROWS = 10_000
ICCID = re.compile(r"^[0-9]{18,20}\Z")  # ASCII only, as the model's ICCID_PATTERN
# An SM-DP+ address is a host name (the LPA string's second part), no scheme or path.
FQDN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
MATCHING_ID = re.compile(r"^[A-Za-z0-9-]{1,255}$")


class ImportFileError(ValueError):
    """The file as a whole cannot be read (not CSV, missing columns, too many rows)."""


@dataclass
class ImportRow:
    number: int  # line number in the file, header = 1
    iccid: str
    smdp_address: str
    matching_id: str
    package_name: str
    owner_text: str = ""
    package: Package | None = None
    owner: User | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def read_rows(text: str, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """An operator's CSV as (line number, header -> stripped value), blank rows left out. Columns
    by header name, in any order; a missing required column, too many rows or an unreadable file
    is an ImportFileError. Shared by the line and the profile pool imports."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = [(name or "").strip().lower() for name in (reader.fieldnames or [])]
    missing = [name for name in required if name not in columns]
    if missing:
        raise ImportFileError(_("Missing columns: %(columns)s.") % {"columns": ", ".join(missing)})
    reader.fieldnames = columns
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for raw in reader:
            if len(rows) >= MAX_ROWS:
                raise ImportFileError(_("At most %(count)d rows per file.") % {"count": MAX_ROWS})
            values = {key: (value or "").strip() for key, value in raw.items() if isinstance(value, str)}
            if any(values.values()):
                rows.append((reader.line_num, values))
    except csv.Error as exc:
        raise ImportFileError(_("Not a readable CSV file: %(error)s") % {"error": exc}) from exc
    return rows


def parse(text: str) -> list[ImportRow]:
    """Read and check every row (no write)."""
    rows = [
        ImportRow(
            number=number,
            iccid=values.get("iccid", ""),
            smdp_address=values.get("smdp_address", ""),
            matching_id=values.get("matching_id", ""),
            package_name=values.get("package", ""),
            owner_text=values.get("owner", ""),
        )
        for number, values in read_rows(text, REQUIRED_COLUMNS)
    ]
    _check(rows)
    return rows


def _check(rows: list[ImportRow]) -> None:
    iccids = [row.iccid for row in rows]
    taken = set(Line.objects.filter(iccid__in=iccids).values_list("iccid", flat=True))
    catalogue = list(Package.objects.all())
    packages = {str(p.pk): p for p in catalogue} | {p.name: p for p in catalogue}
    owners = _owners(row.owner_text for row in rows if row.owner_text)
    seen: set[str] = set()
    for row in rows:
        if not ICCID.match(row.iccid):
            row.errors.append(_("An ICCID is 18 to 20 digits."))
        elif row.iccid in taken:
            row.errors.append(_("This ICCID is already imported."))
        elif row.iccid in seen:
            row.errors.append(_("This ICCID appears twice in the file."))
        seen.add(row.iccid)
        if not FQDN.match(row.smdp_address):
            row.errors.append(_("The SM-DP+ address must be a host name such as smdp.example.com."))
        if not MATCHING_ID.match(row.matching_id):
            row.errors.append(_("The matching ID must be letters, digits and dashes."))
        if row.package_name:
            row.package = packages.get(row.package_name)
            if row.package is None:
                row.errors.append(_("No package named or numbered %(package)s.") % {"package": row.package_name})
        if row.owner_text:
            row.owner = owners.get(_owner_key(row.owner_text))
            if row.owner is None:
                row.errors.append(
                    _("No customer has the email address or phone number %(owner)s (phones as +8613800138000).")
                    % {"owner": row.owner_text}
                )


def _owner_key(text: str) -> str:
    """How an owner cell is looked up: an email in lower case, a phone in E.164 ("" if neither)."""
    if "@" in text:
        return text.lower()
    try:
        return phonenumbers.format_number(phonenumbers.parse(text, None), phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return ""


def _owners(texts: Iterable[str]) -> dict[str, User]:
    """The customers the owner cells name, by lookup key: two queries for the whole file."""
    keys = {_owner_key(text) for text in texts} - {""}
    emails = [key for key in keys if "@" in key]
    phones = [key for key in keys if "@" not in key]
    found: dict[str, User] = {}
    if emails:
        for user in User.objects.annotate(email_lower=Lower("email")).filter(email_lower__in=emails):
            found[user.email_lower] = user
    if phones:
        for user in User.objects.filter(phone__in=phones):
            found[user.phone] = user
    return found


def import_lines(*, text: str, actor, now: datetime) -> tuple[list[Line], list[ImportRow]]:
    """Create the good rows (re-checked now, not trusted from the preview); return (created, bad rows)."""
    rows = parse(text)
    good = [row for row in rows if row.ok]
    with transaction.atomic():
        created = Line.objects.bulk_create(
            [
                Line(
                    iccid=row.iccid,
                    smdp_address=row.smdp_address,
                    matching_id=row.matching_id,
                    package=row.package,
                    owner=row.owner,
                )
                for row in good
            ],
            ignore_conflicts=False,
        )
        for line in created:
            record_change(
                obj=line,
                action="imported",
                actor=actor,
                after={"iccid": line.iccid, "package": line.package_id, "owner": line.owner_id, "status": line.status},
                now=now,
            )
        notices.owe_lines_added(lines=[line for line in created if line.owner_id], now=now)
    logger.info(
        "lines_imported created=%s rejected=%s operator=%s",
        len(created),
        len(rows) - len(good),
        getattr(actor, "pk", None),
    )
    return created, [row for row in rows if not row.ok]
