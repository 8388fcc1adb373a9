"""Demo data for `make run`: an operator, a verified customer with two lines, three packages and
the retry policy. Idempotent: running it again changes nothing that exists."""

from datetime import UTC, timedelta

from allauth.account.models import EmailAddress
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Line, Package, UsageHour, UsageRecord, User
from renewals.models import RetryPolicy

OPERATOR = ("operator@example.com", "operator-demo-pass")
CUSTOMER = ("customer@example.com", "customer-demo-pass")
GB = 1024**3
DEMO_COVERAGE = "CN, HK, MO"
PACKAGES = [
    ("Starter 1 GB / 7 days", "入门套餐 1 GB / 7 天", 1 * GB, 7, 1800, "CNY"),
    ("Standard 10 GB / 30 days", "标准套餐 10 GB / 30 天", 10 * GB, 30, 9800, "CNY"),
    ("Plus 50 GB / 30 days", "畅享套餐 50 GB / 30 天", 50 * GB, 30, 19800, "CNY"),
]


class Command(BaseCommand):
    help = "Load the demo operator, customer, packages and lines (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        self._user(*OPERATOR, is_staff=True, is_superuser=True, name="Demo Operator")
        customer = self._user(*CUSTOMER, name="Demo Customer", time_zone="Asia/Shanghai")
        packages = [
            Package.objects.get_or_create(
                name=name,
                defaults={
                    "name_zh_hans": name_zh_hans,
                    "data_allowance_bytes": allowance,
                    "validity_days": days,
                    "price_minor": price,
                    "currency": currency,
                    "listed": True,  # on the public plans page (/plans/), for sale as a new eSIM
                    "coverage_countries": DEMO_COVERAGE,
                },
            )[0]
            for name, name_zh_hans, allowance, days, price, currency in PACKAGES
        ]
        # A demo database seeded before packages had Chinese names gets them; a name set by
        # an operator is left alone.
        for package, (_name, name_zh_hans, *_rest) in zip(packages, PACKAGES, strict=True):
            if not package.name_zh_hans:
                package.name_zh_hans = name_zh_hans
                package.save(update_fields=["name_zh_hans"])
            # Likewise a demo database seeded before the catalogue: its packages go on sale.
            if not package.coverage_countries:
                package.coverage_countries, package.listed = DEMO_COVERAGE, True
                package.save(update_fields=["coverage_countries", "listed"])
        now = timezone.now()
        Line.objects.get_or_create(
            iccid="8986001234567890123",
            defaults={
                "owner": customer,
                "label": "Phone",
                "smdp_address": "smdp.example.com",
                "matching_id": "DEMO-PHONE-0001",
                "status": Line.Status.ACTIVE,
                "package": packages[1],
                "data_remaining_bytes": 6 * GB,
                "data_used_bytes": 4 * GB,
                "expires_at": now + timedelta(days=20),
                "activated_at": now - timedelta(days=10),
                "package_started_at": now - timedelta(days=10),
            },
        )
        Line.objects.get_or_create(
            iccid="89860012345678901245",
            defaults={
                "owner": customer,
                "label": "Tablet",
                "smdp_address": "smdp.example.com",
                "matching_id": "DEMO-TABLET-0002",
                "status": Line.Status.ACTIVE,
                "package": packages[0],
                "data_remaining_bytes": 300 * 1024**2,
                "data_used_bytes": GB - 300 * 1024**2,
                "expires_at": now + timedelta(days=2),
                "activated_at": now - timedelta(days=5),
                "package_started_at": now - timedelta(days=5),
            },
        )
        self._usage(Line.objects.filter(owner=customer), now=now)
        RetryPolicy.current()
        self.stdout.write(self.style.SUCCESS("demo data ready"))
        self.stdout.write(f"  customer: {CUSTOMER[0]} / {CUSTOMER[1]}")
        self.stdout.write(
            f"  operator: {OPERATOR[0]} / {OPERATOR[1]} (the admin asks to set up an authenticator app first)"
        )

    def _usage(self, lines, *, now) -> None:
        """Daily records since each line's package began, adding up exactly to the line's "used"
        figure, so the page's numbers agree (docs/pages.md). Record ids are per line and day: a
        second run adds nothing."""
        for line in lines:
            began = line.package_started_at or line.activated_at or now - timedelta(days=1)
            days = max(1, (now - began).days)
            weights = [50 + (days_ago * 37 + line.pk * 11) % 200 for days_ago in range(days)]
            amounts = [line.data_used_bytes * weight // sum(weights) for weight in weights]
            amounts[0] += line.data_used_bytes - sum(amounts)  # the rounding left over, today
            for days_ago, amount in enumerate(amounts):
                day = now - timedelta(days=days_ago, hours=1)  # never in the future, after `began`
                _record, created = UsageRecord.objects.get_or_create(
                    partner_record_id=f"demo-{line.iccid}-{day:%Y%m%d}",
                    defaults={
                        "line": line,
                        "bytes": amount,
                        "period_start": day,
                        "period_end": day + timedelta(hours=1),
                    },
                )
                if created:  # the roll-up the chart reads (docs/usage.md, "Daily roll-ups")
                    hour, _new = UsageHour.objects.get_or_create(
                        line=line, hour=day.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
                    )
                    UsageHour.objects.filter(pk=hour.pk).update(bytes=F("bytes") + amount, records=F("records") + 1)

    def _user(self, email: str, password: str, **fields) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User(email=email, **fields)
            user.set_password(password)
            user.save()
        EmailAddress.objects.get_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
        return user
