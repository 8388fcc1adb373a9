"""Reads shared by views, admin and tasks."""
from django.db.models import QuerySet

from .models import Line


def lines_for_user(user) -> QuerySet[Line]:
    return Line.objects.filter(owner=user).select_related("package").order_by("created_at", "id")


def line_for_user(user, line_id: int) -> Line:
    """The user's own line, or Line.DoesNotExist: another customer's line is a 404, never a 403."""
    return lines_for_user(user).get(pk=line_id)
