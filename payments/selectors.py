"""Reads shared by the payments pages, the renewals pages and the admin. No call to Stripe:
payment methods come from dj-stripe's mirror, charges from our ledger."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from . import gateways
from .models import Charge

EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class SavedMethod:
    id: str
    type: str
    summary: str
    brand: str = ""
    last4: str = ""
    exp_month: int | None = None
    exp_year: int | None = None
    funding: str = ""  # credit, debit, prepaid (cards only)
    is_default: bool = False
    expired: bool = False
    expiring_soon: bool = False

    def __str__(self) -> str:
        return self.summary

    def described(self) -> str:
        """The method as a customer recognises it: "Visa •••• 4242, expires 12/30"."""
        if self.exp_month and self.exp_year:
            return _("%(method)s, expires %(month)02d/%(year)02d") % {
                "method": self.summary,
                "month": self.exp_month,
                "year": self.exp_year % 100,
            }
        return self.summary


def card_expiry_flags(exp_month: int | None, exp_year: int | None, today: date) -> tuple[bool, bool]:
    """(expired, expiring within 30 days). A card is valid through the last day of its month."""
    if not exp_month or not exp_year:
        return False, False
    last_day = date(exp_year, exp_month, calendar.monthrange(exp_year, exp_month)[1])
    if last_day < today:
        return True, False
    return False, last_day <= today + timedelta(days=EXPIRY_WARNING_DAYS)


def payment_methods_for_user(user, *, today: date | None = None) -> list[SavedMethod]:
    """The user's attached methods, default first, then newest."""
    from djstripe.models import PaymentMethod

    customer = gateways.customer_for_user(user)
    if customer is None:
        return []
    today = today or timezone.localdate()
    default_id = customer.default_payment_method_id
    methods = []
    for row in PaymentMethod.objects.filter(customer=customer).order_by("-created", "-djstripe_id"):
        data = row.stripe_data or {}
        card = data.get("card") or {}
        sepa = data.get("sepa_debit") or {}
        expired, soon = card_expiry_flags(card.get("exp_month"), card.get("exp_year"), today)
        methods.append(
            SavedMethod(
                id=row.id,
                type=data.get("type") or "",
                summary=gateways.payment_method_summary(row),
                brand=gateways.BRAND_NAMES.get(card.get("brand") or "", (card.get("brand") or "").title()),
                last4=card.get("last4") or sepa.get("last4") or "",
                exp_month=card.get("exp_month"),
                exp_year=card.get("exp_year"),
                funding=card.get("funding") or "",
                is_default=row.id == default_id,
                expired=expired,
                expiring_soon=soon,
            )
        )
    methods.sort(key=lambda m: not m.is_default)
    return methods


def usable_payment_methods_for_user(user) -> list[SavedMethod]:
    return [m for m in payment_methods_for_user(user) if not m.expired]


def charges_for_user(
    user, *, line_id: int | None = None, status: str = "", date_from: date | None = None, date_to: date | None = None
) -> QuerySet[Charge]:
    """The user's ledger, newest first. Dates are whole days in the active (the user's) zone."""
    charges = Charge.objects.filter(user=user).select_related("line", "package").order_by("-created_at", "-id")
    if line_id:
        charges = charges.filter(line_id=line_id)
    if status:
        charges = charges.filter(status=status)
    zone = timezone.get_current_timezone()
    if date_from:
        charges = charges.filter(created_at__gte=datetime.combine(date_from, time.min, tzinfo=zone))
    if date_to:
        charges = charges.filter(created_at__lt=datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=zone))
    return charges


def charge_for_user(user, charge_id: int) -> Charge:
    """Charge.DoesNotExist for another customer's charge: a 404, never a 403."""
    return Charge.objects.select_related("line", "package", "user").get(pk=charge_id, user=user)


def method_for_off_session(*, user, payment_method_id: str = ""):
    """The dj-stripe PaymentMethod an off-session charge for `user` uses, with its customer id:
    `payment_method_id` if the customer holds it, else their default if still attached; None if
    neither. One query on the mirror, no call to Stripe (a renewal's charge path reads it once)."""
    from django.conf import settings
    from django.db.models import F
    from djstripe.models import PaymentMethod

    methods = PaymentMethod.objects.filter(
        customer__subscriber=user, customer__livemode=settings.STRIPE_LIVE_MODE, customer__date_purged__isnull=True
    )
    if payment_method_id:
        return methods.filter(id=payment_method_id).first()
    return methods.filter(id=F("customer__default_payment_method")).first()


def default_method_id(user) -> str:
    """The id of the user's default method in our mirror, or ""."""
    return gateways.default_payment_method_id(user) or ""
