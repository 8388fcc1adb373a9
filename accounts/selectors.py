"""Reads shared by views, admin and tasks."""

from datetime import date, datetime, tzinfo

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDate

from .models import Line, UsageAdjustment, UsageHour


def lines_for_user(user) -> QuerySet[Line]:
    return Line.objects.filter(owner=user).select_related("package").order_by("created_at", "id")


def line_for_user(user, line_id: int) -> Line:
    """The user's own line, or Line.DoesNotExist: another customer's line is a 404, never a 403."""
    return lines_for_user(user).get(pk=line_id)


def daily_usage_for_lines(lines, *, since: datetime, zone: tzinfo) -> dict[int, dict[date, int]]:
    """Bytes used per line per calendar day in `zone`, from `since` on: one query for all lines,
    so the account page costs the same whatever the number of lines. Read from the hourly roll-up
    (UsageHour), not the records: at most 24 rows per line and day, however often the partner
    reports; a record counts on the day its period starts (docs/usage.md, "Daily roll-ups")."""
    rows = (
        UsageHour.objects.filter(line__in=[line.pk for line in lines], hour__gte=since)
        .annotate(day=TruncDate("hour", tzinfo=zone))
        .values("line_id", "day")
        .annotate(total=Sum("bytes"))
        .order_by()
    )
    usage: dict[int, dict[date, int]] = {line.pk: {} for line in lines}
    for row in rows:
        usage[row["line_id"]][row["day"]] = row["total"]
    return usage


def usage_corrections_for_line(line: Line, *, limit: int = 20) -> QuerySet[UsageAdjustment]:
    """The operator's corrections of the line's usage, newest first (the customer's line page shows
    them as such; who made them and why stays with the operators)."""
    return (
        UsageAdjustment.objects.filter(line=line)
        .only("bytes", "created_at", "line_id")
        .order_by("-created_at", "-id")[:limit]
    )
