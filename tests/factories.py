"""Small builders: each test makes exactly the data it needs."""
import itertools
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.utils import timezone

from accounts.models import Line, Package, User

MB = 1024**2
GB = 1024**3
_seq = itertools.count(1)


def make_user(*, email: str | None = None, password: str = "correct horse battery", verified: bool = True, **fields) -> User:
    n = next(_seq)
    email = email if email is not None else f"customer{n}@example.com"
    user = User.objects.create_user(email=email, password=password, **fields)
    if email:
        EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    return user


def make_package(**fields) -> Package:
    defaults = {"name": f"10 GB / 30 days #{next(_seq)}", "data_allowance_bytes": 10 * GB, "validity_days": 30, "price_minor": 9800, "currency": "CNY"}
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
