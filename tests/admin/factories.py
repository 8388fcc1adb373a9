"""Renewal-side rows for the admin tests, built directly: the engine's own tests cover how they arise."""
import uuid

from django.utils import timezone

from payments.models import Charge
from renewals.models import Renewal, RenewalRule


def make_rule(*, line, package, **fields) -> RenewalRule:
    defaults = {"enabled": True, "trigger_data_below_mb": 500}
    defaults.update(fields)
    return RenewalRule.objects.create(line=line, package=package, **defaults)


def make_renewal(*, line, package, rule=None, status=Renewal.Status.DUE, **fields) -> Renewal:
    fields.setdefault("next_attempt_at", timezone.now())
    return Renewal.objects.create(line=line, rule=rule, package=package, amount_minor=package.price_minor,
                                  currency=package.currency, status=status, **fields)


def make_charge(*, user, line=None, package=None, renewal=None, attempt=None, **fields) -> Charge:
    fields.setdefault("amount_minor", package.price_minor if package else 9800)
    fields.setdefault("currency", package.currency if package else "CNY")
    return Charge.objects.create(user=user, line=line, package=package, renewal=renewal, attempt=attempt,
                                 purpose=Charge.Purpose.RENEWAL if renewal else Charge.Purpose.PURCHASE,
                                 idempotency_key=f"test-{uuid.uuid4()}", **fields)
