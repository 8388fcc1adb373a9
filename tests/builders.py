"""The test-data builders, one module for the whole suite: each test makes exactly the rows it
needs, with the fields it cares about named at the call. Plain functions over the ORM (no
factory library); rows the engine's own tests make arise through services instead."""

import itertools
import uuid
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.utils import timezone

from accounts.models import Line, Package, User
from payments.models import Charge
from renewals.models import Renewal, RenewalRule

MB = 1024**2
GB = 1024**3
_seq = itertools.count(1)


def make_user(
    *, email: str | None = None, password: str = "correct horse battery", verified: bool = True, **fields
) -> User:
    n = next(_seq)
    email = email if email is not None else f"customer{n}@example.com"
    user = User.objects.create_user(email=email, password=password, **fields)
    if email:
        EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    return user


def make_package(**fields) -> Package:
    defaults = {
        "name": f"10 GB / 30 days #{next(_seq)}",
        "data_allowance_bytes": 10 * GB,
        "validity_days": 30,
        "price_minor": 9800,
        "currency": "CNY",
    }
    defaults.update(fields)
    return Package.objects.create(**defaults)


def make_line(*, owner: User | None, **fields) -> Line:
    n = next(_seq)
    defaults = {
        "iccid": f"8986{n:015d}",
        "smdp_address": "smdp.example.com",
        "matching_id": f"MATCH-{n:06d}",
        "status": Line.Status.ACTIVE,
        "data_remaining_bytes": 5 * GB,
        "data_used_bytes": 5 * GB,
        "expires_at": timezone.now() + timedelta(days=10),
    }
    defaults.update(fields)
    return Line.objects.create(owner=owner, **defaults)


def make_rule(*, line: Line, package: Package, **fields) -> RenewalRule:
    """An enabled rule renewing at 500 MB left (the model's defaults otherwise: at most two a day,
    overage blocked)."""
    defaults = {
        "enabled": True,
        "trigger_data_below_mb": 500,
        "max_renewals_per_day": 2,
        "overage_policy": RenewalRule.OveragePolicy.BLOCK,
    }
    defaults.update(fields)
    return RenewalRule.objects.create(line=line, package=package, **defaults)


def make_renewal(
    *, line: Line, package: Package, rule: RenewalRule | None = None, status: str = Renewal.Status.DUE, **fields
) -> Renewal:
    """A renewal row as the engine would have opened it, at the package's price, due now."""
    fields.setdefault("next_attempt_at", timezone.now())
    return Renewal.objects.create(
        line=line,
        rule=rule,
        package=package,
        amount_minor=package.price_minor,
        currency=package.currency,
        status=status,
        **fields,
    )


def make_charge(
    *,
    user: User,
    line: Line | None = None,
    package: Package | None = None,
    renewal: Renewal | None = None,
    attempt: int | None = None,
    amount_minor: int | None = None,
    currency: str | None = None,
    **fields,
) -> Charge:
    """A ledger row (a renewal charge if `renewal` is given, else a purchase) at the package's
    price unless told, with a fresh idempotency key. No call to the processor."""
    return Charge.objects.create(
        user=user,
        line=line,
        package=package,
        renewal=renewal,
        attempt=attempt,
        purpose=Charge.Purpose.RENEWAL if renewal else Charge.Purpose.PURCHASE,
        amount_minor=amount_minor if amount_minor is not None else (package.price_minor if package else 9800),
        currency=currency or (package.currency if package else "CNY"),
        idempotency_key=f"test-{uuid.uuid4()}",
        **fields,
    )
