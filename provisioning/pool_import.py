"""The profile pool from the operator's CSV (docs/provisioning.md, "Profiles"): columns `iccid`
(required, the same 18–20 ASCII digits as the line import) and `profile_type` (optional, default
"default"). Every row is checked on its own; the good rows are added to the pool with a history
row each, the bad ones come back with their reasons, as the line import does."""

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils.translation import gettext as _

from accounts.history import record_change
from accounts.services.line_import import ICCID, read_rows

from .models import Profile

logger = logging.getLogger(__name__)

DEFAULT_TYPE = "default"
PROFILE_TYPE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


@dataclass
class PoolRow:
    number: int  # line number in the file, header = 1
    iccid: str
    profile_type: str
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse(text: str) -> list[PoolRow]:
    """Read and check every row (no write)."""
    rows = [
        PoolRow(
            number=number,
            iccid=values.get("iccid", ""),
            profile_type=values.get("profile_type", "") or DEFAULT_TYPE,
        )
        for number, values in read_rows(text, ("iccid",))
    ]
    taken = set(Profile.objects.filter(iccid__in=[row.iccid for row in rows]).values_list("iccid", flat=True))
    seen: set[str] = set()
    for row in rows:
        if not ICCID.match(row.iccid):
            row.errors.append(_("An ICCID is 18 to 20 digits."))
        elif row.iccid in taken:
            row.errors.append(_("This ICCID is already in the pool."))
        elif row.iccid in seen:
            row.errors.append(_("This ICCID appears twice in the file."))
        seen.add(row.iccid)
        if not PROFILE_TYPE.match(row.profile_type):
            row.errors.append(_("A profile type is up to 64 letters, digits, dots, dashes and underscores."))
    return rows


def import_profiles(*, text: str, actor, now: datetime) -> tuple[list[Profile], list[PoolRow]]:
    """Add the good rows (re-checked now, not trusted from the preview); return (added, bad rows).
    An ICCID another import added meanwhile raises IntegrityError and nothing is added."""
    rows = parse(text)
    good = [row for row in rows if row.ok]
    with transaction.atomic():
        created = Profile.objects.bulk_create(
            [Profile(iccid=row.iccid, profile_type=row.profile_type, imported_at=now) for row in good]
        )
        for profile in created:
            record_change(
                obj=profile,
                action="imported",
                actor=actor,
                after={"iccid": profile.iccid, "profile_type": profile.profile_type, "status": profile.status},
                now=now,
            )
    logger.info(
        "pool_imported created=%s rejected=%s operator=%s",
        len(created),
        len(rows) - len(good),
        getattr(actor, "pk", None),
    )
    return created, [row for row in rows if not row.ok]
