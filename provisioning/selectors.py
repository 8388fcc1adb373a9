"""Reads of provisioning shared by the views, the admin and the tasks."""

from __future__ import annotations

from .models import ProfileOrder


def order_for_user(user, order_id: int) -> ProfileOrder:
    """ProfileOrder.DoesNotExist for another customer's order: a 404, never a 403."""
    return ProfileOrder.objects.select_related("package", "line", "charge").get(pk=order_id, user=user)


def order_for_charge(user, charge_id: int) -> ProfileOrder | None:
    return ProfileOrder.objects.filter(charge_id=charge_id, user=user).first()
