"""Who the customer is and what they own: users, eSIM lines, the packages the operator
sells, and the partner's usage records.

A little over our ~400-line habit on purpose: Django's one models module per app, and each model
here carries its constraints (the database's half of docs/invariants.md), which read best beside
the fields they guard."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.contenttypes.fields import GenericForeignKey
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts.templatetags.data_units import signed_data_size

# [0-9], not \d: \d also matches full-width and other scripts' digits, which would make a twin
# line that the partner's (ASCII) ICCIDs never match; \Z, not $: $ lets a trailing newline through.
ICCID_PATTERN = r"^[0-9]{18,20}\Z"
ICCID_VALIDATOR = RegexValidator(
    ICCID_PATTERN, _("An ICCID is 18 to 20 digits.")
)  # stored as received: no Luhn check digit is required (docs/invariants.md)
# ISO 3166-1 alpha-2 codes separated by commas (spaces allowed): "CN, HK, MO".
COUNTRY_CODES_VALIDATOR = RegexValidator(
    r"^\s*[A-Za-z]{2}(\s*,\s*[A-Za-z]{2})*\s*,?\s*\Z", _("Use ISO country codes separated by commas, such as CN, HK.")
)
CURRENCY_VALIDATOR = RegexValidator(r"^[A-Z]{3}$", _("Use an ISO 4217 code such as CNY or EUR."))


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        email = self.normalize_email(email) if email else None
        user = self.model(email=email, **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email=None, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields["is_staff"] = True
        extra_fields["is_superuser"] = True
        return self._create_user(email, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A customer or an operator. Logs in by email or phone (django-allauth); no username."""

    email = models.EmailField(_("email address"), unique=True, null=True, blank=True)
    phone = models.CharField(_("phone number"), max_length=20, unique=True, null=True, blank=True)
    phone_verified = models.BooleanField(_("phone verified"), default=False)
    name = models.CharField(_("name"), max_length=150, blank=True)
    language = models.CharField(_("language"), max_length=10, blank=True)
    time_zone = models.CharField(_("time zone"), max_length=64, default="UTC")
    is_staff = models.BooleanField(_("staff status"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.CheckConstraint(
                condition=Q(email__isnull=False) | Q(phone__isnull=False),
                name="user_has_email_or_phone",
            ),
        ]

    def __str__(self) -> str:
        return self.email or self.phone or f"user {self.pk}"

    def clean(self):
        super().clean()
        # Empty strings would collide on the unique index; absent means NULL.
        self.email = self.__class__.objects.normalize_email(self.email) or None
        self.phone = self.phone or None


class Package(models.Model):
    """What the operator sells: a data allowance valid for a number of days, at a price."""

    # What the customer reads, per language (docs/translations.md): the plain fields are the
    # default (English); a language's own field is used when it is filled in.
    name = models.CharField(_("name"), max_length=100)
    name_zh_hans = models.CharField(_("name (Chinese)"), max_length=100, blank=True)
    description = models.TextField(_("description"), blank=True)
    description_zh_hans = models.TextField(_("description (Chinese)"), blank=True)
    data_allowance_bytes = models.BigIntegerField(_("data allowance (bytes)"), validators=[MinValueValidator(0)])
    validity_days = models.PositiveIntegerField(_("validity (days)"), validators=[MinValueValidator(1)])
    price_minor = models.BigIntegerField(_("price (minor units)"), validators=[MinValueValidator(0)])
    currency = models.CharField(_("currency"), max_length=3, validators=[CURRENCY_VALIDATOR])
    active = models.BooleanField(_("on sale"), default=True)
    # The public catalogue (/plans/, docs/catalogue.md): the packages sold as a new eSIM. An active
    # package that is not listed is still sold as a top-up or renewal of an existing line.
    listed = models.BooleanField(
        _("in the catalogue"), default=False, help_text=_("Shown on the plans page, for sale as a new eSIM.")
    )
    # ISO 3166-1 alpha-2 codes, shown as country names in the reader's language (Babel's CLDR).
    coverage_countries = models.CharField(
        _("coverage (country codes)"),
        max_length=1000,
        blank=True,
        validators=[COUNTRY_CODES_VALIDATOR],
        help_text=_("ISO country codes separated by commas, for example CN, HK, MO, JP."),
    )
    coverage_region = models.CharField(
        _("coverage (region)"),
        max_length=100,
        blank=True,
        help_text=_("Optional, shown as written above the countries, for example Asia (12 countries)."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("package")
        verbose_name_plural = _("packages")
        ordering = ["currency", "price_minor", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(price_minor__gte=0), name="package_price_not_negative"),
            models.CheckConstraint(condition=Q(data_allowance_bytes__gte=0), name="package_allowance_not_negative"),
            models.CheckConstraint(condition=Q(validity_days__gte=1), name="package_validity_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    def name_in(self, language: str | None) -> str:
        return self._in_language("name", language)

    def description_in(self, language: str | None) -> str:
        return self._in_language("description", language)

    @property
    def localized_name(self) -> str:
        """The name in the active language: what pages and forms show."""
        return self.name_in(translation.get_language())

    @property
    def localized_description(self) -> str:
        return self.description_in(translation.get_language())

    @property
    def validity_text(self) -> str:
        """ "7 days" / "7 天" in the active language."""
        return ngettext("%(count)d day", "%(count)d days", self.validity_days) % {"count": self.validity_days}

    def _in_language(self, field: str, language: str | None) -> str:
        suffix = (language or "").lower().replace("-", "_")
        translated = getattr(self, f"{field}_{suffix}", "") if suffix in self.TRANSLATED_LANGUAGES else ""
        return translated or getattr(self, field)

    TRANSLATED_LANGUAGES = ("zh_hans",)

    def clean(self):
        super().clean()
        from babel import Locale  # CLDR's territory list: the codes a reader's language can name

        known = Locale.parse("en").territories
        unknown = [code for code in self.coverage_codes if code not in known or code.isdigit()]
        if unknown:
            raise ValidationError(
                {"coverage_countries": _("Unknown country codes: %(codes)s.") % {"codes": ", ".join(unknown)}}
            )
        self.coverage_countries = ", ".join(dict.fromkeys(self.coverage_codes))

    @property
    def coverage_codes(self) -> list[str]:
        return [code.strip().upper() for code in self.coverage_countries.split(",") if code.strip()]

    @property
    def buy_url(self) -> str:
        """Where the catalogue's Buy button goes: the provisioning app's buy page, which lives above
        accounts, so it is found by its URL name, never imported (docs/catalogue.md)."""
        return reverse("provisioning:buy", args=[self.pk])


class Line(models.Model):
    """One eSIM. Data counters are bytes; `expires_at` is the end of validity (UTC)."""

    class Status(models.TextChoices):
        INACTIVE = "inactive", _("Not activated")
        ACTIVE = "active", _("Active")
        DATA_EXHAUSTED = "data_exhausted", _("Out of data")
        SUSPENDED = "suspended", _("Suspended")
        EXPIRED = "expired", _("Expired")
        TERMINATED = "terminated", _("Terminated")

    owner = models.ForeignKey(
        User, verbose_name=_("owner"), related_name="lines", on_delete=models.PROTECT, null=True, blank=True
    )
    iccid = models.CharField(_("ICCID"), max_length=20, unique=True, validators=[ICCID_VALIDATOR])
    smdp_address = models.CharField(_("SM-DP+ address"), max_length=255)
    matching_id = models.CharField(_("matching ID"), max_length=255)
    label = models.CharField(_("label"), max_length=100, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.INACTIVE)
    # The rest of the line's state (docs/line-states.md): who holds a suspension (an operator's is
    # never lifted by a payment), what the line was before it (a never-activated line comes back
    # inactive), and the data switch, kept whatever the status so that a resume knows it.
    # Database defaults too: bulk loads in SQL (bench/common.py, an operator's import script) that
    # name only the older columns still write a valid line.
    suspended_by_operator = models.BooleanField(_("suspended by an operator"), default=False, db_default=False)
    suspended_from = models.CharField(
        _("status before suspension"), max_length=20, choices=Status.choices, blank=True, default="", db_default=""
    )
    data_blocked = models.BooleanField(_("data blocked"), default=False, db_default=False)
    package = models.ForeignKey(
        Package, verbose_name=_("active package"), related_name="+", on_delete=models.PROTECT, null=True, blank=True
    )
    data_remaining_bytes = models.BigIntegerField(_("data remaining (bytes)"), default=0)
    data_used_bytes = models.BigIntegerField(_("data used (bytes)"), default=0)
    # Usage beyond zero that the overage policy let through; settled at the next renewal.
    overage_bytes = models.BigIntegerField(_("overage (bytes)"), default=0)
    expires_at = models.DateTimeField(_("valid until"), null=True, blank=True)
    # When the active package was applied: usage whose period ended before it belongs to an earlier
    # package and is not charged to this one (docs/usage.md). NULL (lines from before it was kept):
    # every record is charged, as before.
    package_started_at = models.DateTimeField(_("package started"), null=True, blank=True)
    # Which low-data / expiry notices were sent for the current package (reset when one is applied).
    usage_notice_level = models.PositiveSmallIntegerField(_("usage notice sent at %"), default=0)
    expiry_notice_sent = models.BooleanField(_("expiry notice sent"), default=False)
    activated_at = models.DateTimeField(_("activated"), null=True, blank=True)
    # Copies of the line's enabled renewal rule's triggers (NULL: no such trigger), so that the beat
    # sweep finds the lines at a trigger through an index instead of joining every rule with its
    # line. The database keeps them in step (renewals migration 0004's triggers recompute them on
    # any write to the rule, and on any write to these columns): whatever Python writes here is
    # replaced by the rule's values.
    renew_below_bytes = models.BigIntegerField(null=True, blank=True, editable=False)
    renew_hours_before_expiry = models.PositiveIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("line")
        verbose_name_plural = _("lines")
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["owner", "created_at"]),
            models.Index(fields=["status", "expires_at"]),
            # The sweep's data trigger: "remaining <= threshold" as a range scan of the candidates only.
            models.Index(
                models.F("data_remaining_bytes") - models.F("renew_below_bytes"),
                condition=Q(renew_below_bytes__isnull=False),
                name="line_data_trigger_headroom_idx",
            ),
            # The sweep's expiry trigger: the lines with an expiry rule, by end of validity.
            models.Index(
                fields=["expires_at"],
                condition=Q(renew_hours_before_expiry__isnull=False),
                name="line_expiry_trigger_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(data_used_bytes__gte=0), name="line_used_not_negative"),
            models.CheckConstraint(condition=Q(overage_bytes__gte=0), name="line_overage_not_negative"),
        ]

    def __str__(self) -> str:
        return self.iccid

    @property
    def lpa_string(self) -> str:
        return f"LPA:1${self.smdp_address}${self.matching_id}"

    @property
    def data_total_bytes(self) -> int:
        return max(self.data_remaining_bytes, 0) + self.data_used_bytes

    @property
    def data_allowance_bytes(self) -> int:
        """What this package period's percentages are of: the package's allowance (what the usage
        notices count against), else what the line has had this period."""
        return self.package.data_allowance_bytes if self.package_id else self.data_total_bytes

    @property
    def data_used_percent(self) -> int:
        """The one "% used" of the page and the usage notices (docs/pages.md)."""
        return used_percent(remaining_bytes=self.data_remaining_bytes, allowance_bytes=self.data_allowance_bytes)

    @property
    def data_left_percent(self) -> int:
        return 100 - self.data_used_percent


def used_percent(*, remaining_bytes: int, allowance_bytes: int) -> int:
    """How much of the package's allowance is used, in whole percent rounded down (0–100): the
    account page's "% left" is 100 minus this, the usage notices say this, so they never disagree."""
    if allowance_bytes <= 0:
        return 0
    used = allowance_bytes - max(remaining_bytes, 0)
    return max(0, min(100, used * 100 // allowance_bytes))


class UsageRecord(models.Model):
    """One record from the network partner; its id (with its period start, the same in every
    retry) makes a re-sent record a no-op.

    On PostgreSQL the table is partitioned by day of `period_start` (accounts/partitions.py,
    migration 0016, docs/usage.md "History"): the database's primary key is (id, period_start)
    and the uniqueness is per (partner_record_id, period_start), because a partitioned table's
    unique keys must include the partition key. `id` still comes from one identity sequence, so
    Django's `pk` stays unique."""

    partner_record_id = models.CharField(_("partner record id"), max_length=128)
    # No index of its own: (line, period_start) below serves the foreign key's lookups too.
    line = models.ForeignKey(
        Line, verbose_name=_("line"), related_name="usage_records", on_delete=models.CASCADE, db_index=False
    )
    bytes = models.BigIntegerField(_("bytes"), validators=[MinValueValidator(0)])
    period_start = models.DateTimeField(_("period start"))
    period_end = models.DateTimeField(_("period end"))
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    # False: the record's period ended before its line's package began, so it lowered nothing
    # (docs/usage.md). The line's data_used_bytes counts it; the package's balance does not.
    charged = models.BooleanField(_("charged to the package"), default=True, db_default=True)

    class Meta:
        verbose_name = _("usage record")
        verbose_name_plural = _("usage records")
        indexes = [models.Index(fields=["line", "period_start"])]
        constraints = [
            models.CheckConstraint(condition=Q(bytes__gte=0), name="usage_bytes_not_negative"),
            models.CheckConstraint(condition=Q(period_end__gte=models.F("period_start")), name="usage_period_ordered"),
            # The dedup key (partner/services/usage.py's ON CONFLICT target).
            models.UniqueConstraint(fields=["partner_record_id", "period_start"], name="usage_record_once"),
        ]

    def __str__(self) -> str:
        return self.partner_record_id


def default_usage_retention_days() -> int:
    return 400


class UsageRetention(models.Model):
    """Operator-set: how long raw usage records are kept (one row, `UsageRetention.current()`).
    Older day partitions are dropped by beat (accounts.tasks.maintain_usage_partitions); the
    lines' counters and the daily roll-ups are kept. Never shorter than the dedup window
    (settings.USAGE_DEDUP_WINDOW): a dropped day could no longer catch a retried record."""

    days = models.PositiveIntegerField(
        _("keep raw usage records (days)"),
        default=default_usage_retention_days,
        help_text=_("Older records are deleted; data counters and daily totals are kept."),
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("usage record retention")
        verbose_name_plural = _("usage record retention")

    def __str__(self) -> str:
        return str(_("Usage record retention"))

    @classmethod
    def current(cls) -> "UsageRetention":
        retention, _created = cls.objects.get_or_create(pk=1)
        return retention

    @staticmethod
    def minimum_days() -> int:
        window = settings.USAGE_DEDUP_WINDOW
        return window.days + (1 if window - timedelta(days=window.days) else 0)

    def clean(self) -> None:
        super().clean()
        if self.days is not None and self.days < self.minimum_days():
            raise ValidationError(
                {
                    "days": _(
                        "Keep records at least %(days)s days: the duplicate check looks back that far, "
                        "and a partner's retry of a deleted record would count twice."
                    )
                    % {"days": self.minimum_days()}
                }
            )

    @property
    def period(self) -> timedelta:
        return timedelta(days=self.days)


class UsageHour(models.Model):
    """The roll-up of a line's usage records: bytes and records per hour (UTC) of their period's
    start, kept in the transaction that inserts the records (partner.services.usage), so a
    duplicate adds nothing. Hourly so that days can be cut at the customer's midnight in any
    whole-hour zone; the chart, the usage e-mails and the data export read it, never the raw
    records (docs/usage.md, "Daily roll-ups")."""

    line = models.ForeignKey(Line, verbose_name=_("line"), related_name="usage_hours", on_delete=models.CASCADE)
    hour = models.DateTimeField(_("hour"))
    bytes = models.BigIntegerField(_("bytes"), default=0)
    records = models.IntegerField(_("records"), default=0)

    class Meta:
        verbose_name = _("usage per hour")
        verbose_name_plural = _("usage per hour")
        constraints = [
            models.UniqueConstraint(fields=["line", "hour"], name="usage_hour_unique"),
            models.CheckConstraint(condition=Q(bytes__gte=0), name="usage_hour_bytes_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.line_id} {self.hour:%Y-%m-%d %H:00}"


class UsageAdjustment(models.Model):
    """An operator's signed correction of a line's usage (docs/usage.md, "Operator corrections"):
    negative bytes give usage back (a partner's double report, a goodwill credit), positive bytes
    add usage the partner never reported. Usage records are never edited or deleted; a correction
    is this row, applied by partner.services.adjustments through the same accounting as usage, in
    the period of the package in force when it was made."""

    line = models.ForeignKey(Line, verbose_name=_("line"), related_name="usage_adjustments", on_delete=models.PROTECT)
    bytes = models.BigIntegerField(_("bytes (negative: given back)"))
    reason = models.CharField(_("reason"), max_length=500)
    operator = models.ForeignKey(User, verbose_name=_("operator"), related_name="+", on_delete=models.PROTECT)
    # The package and the period (Line.package_started_at) the correction was charged to.
    package = models.ForeignKey(
        Package, verbose_name=_("package"), related_name="+", on_delete=models.PROTECT, null=True, blank=True
    )
    period_started_at = models.DateTimeField(_("package started"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("usage correction")
        verbose_name_plural = _("usage corrections")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["line", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=~Q(bytes=0), name="usage_adjustment_not_zero"),
            models.CheckConstraint(condition=~Q(reason=""), name="usage_adjustment_has_reason"),
        ]

    def __str__(self) -> str:
        return signed_data_size(self.bytes)  # the admin's row and page titles: "−300 MB", not bytes


class NetworkCommand(models.Model):
    """One command to the network partner, kept as a row (an outbox) so that losing the broker or
    the partner being down loses nothing: the delivery sweep re-sends due rows, oldest first per line."""

    class Command(models.TextChoices):
        BLOCK_DATA = "block_data", _("Block data")
        UNBLOCK_DATA = "unblock_data", _("Unblock data")
        SUSPEND = "suspend", _("Suspend")
        RESUME = "resume", _("Resume")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        # Dead-lettered: refused for good, or out of attempts. Shown as an alert until an operator acts.
        FAILED = "failed", _("Failed")
        # A dead letter an operator dealt with: written again as a new command, or overridden.
        SUPERSEDED = "superseded", _("Superseded")

    line = models.ForeignKey(Line, verbose_name=_("line"), related_name="network_commands", on_delete=models.PROTECT)
    command = models.CharField(_("command"), max_length=20, choices=Command.choices)
    # Grows per line in the order the commands were written: the partner applies a line's commands
    # in this order and drops one older than the last it applied (docs/network-outbox.md).
    sequence = models.BigIntegerField(_("sequence"))
    # The fencing token of the claim that may send this command; a sender re-checks it before sending.
    lease_token = models.UUIDField(_("claim"), null=True, blank=True, editable=False)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # While a delivery is in flight this holds its lease: a crashed sender's command is re-sent after it.
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    last_response_code = models.PositiveSmallIntegerField(_("last response code"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)

    class Meta:
        verbose_name = _("network command")
        verbose_name_plural = _("network commands")
        ordering = ["id"]
        indexes = [
            # The sweep reads only pending rows: its cost follows the backlog, not the table.
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="netcmd_due_idx"),
            models.Index(fields=["line", "id"], condition=Q(status="pending"), name="netcmd_line_pending_idx"),
            # The operations page's and /healthz's dead letters.
            models.Index(fields=["id"], condition=Q(status="failed"), name="netcmd_dead_letter_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(command__in=["block_data", "unblock_data", "suspend", "resume"]),
                name="networkcommand_command_known",
            ),
            models.CheckConstraint(
                condition=Q(status="delivered", delivered_at__isnull=False) | ~Q(status="delivered"),
                name="networkcommand_delivered_has_time",
            ),
            models.UniqueConstraint(fields=["line", "sequence"], name="networkcommand_line_sequence_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.command} line {self.line_id} ({self.status})"


class ChangeRecord(models.Model):
    """One change an operator or a service made to something the business must be able to
    explain later: a rule, a line's state, a package, the retry policy, a renewal or a charge
    acted on from the admin. Who (empty: the system), when, why, and the fields before / after."""

    content_type = models.ForeignKey(
        "contenttypes.ContentType", verbose_name=_("object type"), related_name="+", on_delete=models.PROTECT
    )
    object_id = models.CharField(_("object id"), max_length=64)
    object_repr = models.CharField(_("object"), max_length=200)
    subject = GenericForeignKey("content_type", "object_id")
    action = models.CharField(_("action"), max_length=40)
    actor = models.ForeignKey(
        User, verbose_name=_("by"), related_name="+", on_delete=models.SET_NULL, null=True, blank=True
    )
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    before = models.JSONField(_("before"), default=dict, blank=True)
    after = models.JSONField(_("after"), default=dict, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("change record")
        verbose_name_plural = _("change history")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["content_type", "object_id", "-created_at"])]
        # The operator roles' action rights (console/roles.py); stock add/change/view do not say them.
        permissions = [
            ("retry_renewal", _("Can retry a renewal now")),
            ("cancel_renewal", _("Can cancel a renewal")),
            ("suspend_line", _("Can suspend a line")),
            ("resume_line", _("Can resume a line")),
            ("refund_charge", _("Can refund a charge")),
            ("email_customer", _("Can resend a verification or pay-now email")),
            ("import_lines", _("Can import lines from CSV")),
            ("view_operations", _("Can see the operations page")),
            ("adjust_usage", _("Can correct a line's usage")),
            ("close_account", _("Can close a customer's account and erase their personal data")),
            ("export_customer_data", _("Can download a customer's data (subject access request)")),
            ("assign_line", _("Can assign a line to a customer")),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_repr}"


class Heartbeat(models.Model):
    """When a periodic job last finished a pass (the renewals dispatcher): the operations page and
    the health endpoint read its age. One row per job, overwritten each pass."""

    name = models.CharField(_("name"), max_length=50, primary_key=True)
    at = models.DateTimeField(_("last pass"))

    class Meta:
        verbose_name = _("heartbeat")
        verbose_name_plural = _("heartbeats")

    def __str__(self) -> str:
        return self.name


# The kinds of `Notice.kind`, in the operator's words; a kind without a label shows as written.
NOTICE_KIND_LABELS = {
    "usage": _("Data usage alert"),
    "expiry": _("Expiry reminder"),
    "line_added": _("New line added"),
}


class Notice(models.Model):
    """A message the customer is owed (docs/notifications.md): written in the transaction of the
    event that caused it, with what it will say (`facts`, a snapshot taken then), and sent by the
    `accounts.send_notices` task after the commit, in the customer's language and time zone,
    retried with `next_attempt_at` when the mail server fails. `dedup_key` names the event: the same
    event written twice owes one message."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Sent")
        # Nobody to send to (no email address) or no longer true (the line ended): never sent.
        SKIPPED = "skipped", _("Not sent")
        # Out of attempts, or too old to be news: the operations page lists these.
        FAILED = "failed", _("Failed")

    user = models.ForeignKey(User, verbose_name=_("customer"), related_name="notices", on_delete=models.CASCADE)
    line = models.ForeignKey(
        Line, verbose_name=_("line"), related_name="notices", on_delete=models.SET_NULL, null=True, blank=True
    )
    kind = models.CharField(_("kind"), max_length=40)
    facts = models.JSONField(_("what the message says"), default=dict, blank=True)
    dedup_key = models.CharField(_("event"), max_length=200, unique=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    # Resolved when it is sent: the customer's language then, not when the event happened.
    language = models.CharField(_("language"), max_length=10, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("customer notice")
        verbose_name_plural = _("customer notices")
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sender's sweep reads only the pending rows that are due.
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="notice_due_idx"),
            # The operations page's and /healthz's failed notices.
            models.Index(fields=["id"], condition=Q(status="failed"), name="notice_failed_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="sent", sent_at__isnull=False) | ~Q(status="sent"), name="notice_sent_has_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind_label} ({self.get_status_display()})"

    @property
    def kind_label(self) -> str:
        """What the operator reads for `kind` (accounts.services.notices.USAGE, EXPIRY)."""
        return str(NOTICE_KIND_LABELS.get(self.kind, self.kind))
