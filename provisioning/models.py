"""Getting a new eSIM: the order of one profile from the SM-DP+ per paid purchase, its ES2+ call
history and the operator's pool of ICCIDs (docs/provisioning.md)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Profile(models.Model):
    """An ICCID the operator imported, ordered from the SM-DP+ by its ICCID (pool mode)."""

    class Status(models.TextChoices):
        AVAILABLE = "available", _("Available")
        ASSIGNED = "assigned", _("Assigned to an order")
        RETIRED = "retired", _("Retired")

    iccid = models.CharField(_("ICCID"), max_length=20, unique=True)
    profile_type = models.CharField(_("profile type"), max_length=64, default="default")
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.AVAILABLE)
    imported_at = models.DateTimeField(_("imported"), default=timezone.now)
    assigned_at = models.DateTimeField(_("assigned"), null=True, blank=True)

    class Meta:
        verbose_name = _("profile in the pool")
        verbose_name_plural = _("profile pool")
        ordering = ["imported_at", "id"]

    def __str__(self) -> str:
        return self.iccid


class ProfileOrder(models.Model):
    """One eSIM bought: created in the transaction that records its payment, then moved on by the
    worker through ES2+ and by the SM-DP+'s notifications. Steps only move forward."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Ordering")
        DOWNLOAD_ORDERED = "download_ordered", _("Profile reserved")
        RELEASED = "released", _("Ready to install")
        DOWNLOADED = "downloaded", _("Downloaded")
        INSTALLED = "installed", _("Installed")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    class Source(models.TextChoices):
        SMDP = "smdp", _("Allocated by the SM-DP+")
        POOL = "pool", _("From the imported pool")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("customer"), related_name="profile_orders", on_delete=models.PROTECT
    )
    package = models.ForeignKey(
        "accounts.Package", verbose_name=_("package"), related_name="+", on_delete=models.PROTECT
    )
    # One order per purchase, whatever records the payment twice (webhook, return page, sweep).
    charge = models.OneToOneField(
        "payments.Charge", verbose_name=_("payment"), related_name="profile_order", on_delete=models.PROTECT
    )
    line = models.OneToOneField(
        "accounts.Line",
        verbose_name=_("line"),
        related_name="profile_order",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(_("profile source"), max_length=10, choices=Source.choices, default=Source.SMDP)
    profile = models.OneToOneField(
        Profile, verbose_name=_("pool profile"), related_name="order", on_delete=models.PROTECT, null=True, blank=True
    )
    iccid = models.CharField(_("ICCID"), max_length=20, blank=True)
    eid = models.CharField(_("EID"), max_length=32, blank=True)
    smdp_address = models.CharField(_("SM-DP+ address"), max_length=255, blank=True)
    matching_id = models.CharField(_("matching ID"), max_length=255, blank=True)
    # Where the profile is on the device as last reported (enabled / disabled / deleted).
    device_state = models.CharField(_("on the device"), max_length=20, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    failure_code = models.CharField(_("failure code"), max_length=40, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    download_ordered_at = models.DateTimeField(_("profile reserved"), null=True, blank=True)
    released_at = models.DateTimeField(_("ready to install"), null=True, blank=True)
    downloaded_at = models.DateTimeField(_("downloaded"), null=True, blank=True)
    installed_at = models.DateTimeField(_("installed"), null=True, blank=True)
    enabled_at = models.DateTimeField(_("enabled"), null=True, blank=True)
    disabled_at = models.DateTimeField(_("disabled"), null=True, blank=True)
    deleted_at = models.DateTimeField(_("deleted"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled"), null=True, blank=True)
    reminder_sent_at = models.DateTimeField(_("install reminder sent"), null=True, blank=True)
    alert_resolved_at = models.DateTimeField(_("alert resolved"), null=True, blank=True)

    # The order of the forward steps: a late notification never moves an order back.
    RANK: dict[str, int] = {
        Status.PENDING: 0,
        Status.DOWNLOAD_ORDERED: 1,
        Status.RELEASED: 2,
        Status.DOWNLOADED: 3,
        Status.INSTALLED: 4,
    }
    OPEN = (Status.PENDING, Status.DOWNLOAD_ORDERED)

    class Meta:
        verbose_name = _("eSIM order")
        verbose_name_plural = _("eSIM orders")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "download_ordered"]),
                name="profile_order_open_due",
            )
        ]

    def __str__(self) -> str:
        return f"eSIM order {self.pk} ({self.status})"

    def function_call_id(self, function: str) -> str:
        """Stable across retries: the same order's same function is the same ES2+ call."""
        return f"{settings.SMDP_REQUESTER_ID}-order-{self.pk}-{function}"

    @property
    def activation_code(self) -> str:
        if not (self.smdp_address and self.matching_id):
            return ""
        return f"LPA:1${self.smdp_address}${self.matching_id}"

    def install_steps(self) -> list[dict]:
        """The customer's view of the order: each step with its time (None: not reached yet), then
        the device events reported, in the order they happened."""
        S = self.Status
        steps: list[dict] = [
            {"key": "ordered", "label": _("Ordered"), "at": self.created_at},
            {"key": "ready", "label": S.RELEASED.label, "at": self.released_at},
            {"key": "downloaded", "label": S.DOWNLOADED.label, "at": self.downloaded_at},
            {"key": "installed", "label": S.INSTALLED.label, "at": self.installed_at},
        ]
        events = {"enabled": _("Enabled"), "disabled": _("Disabled"), "deleted": _("Deleted")}
        reported = [(key, getattr(self, f"{key}_at")) for key in events if getattr(self, f"{key}_at")]
        for key, at in sorted(reported, key=lambda item: item[1]):
            steps.append({"key": key, "label": events[key], "at": at})
        return steps

    @property
    def ready(self) -> bool:
        return self.RANK.get(self.status, -1) >= self.RANK[self.Status.RELEASED]


class Es2Call(models.Model):
    """One ES2+ request and what came of it, kept for the operator (and one row per notification
    received from the SM-DP+)."""

    order = models.ForeignKey(ProfileOrder, verbose_name=_("order"), related_name="calls", on_delete=models.CASCADE)
    function = models.CharField(_("function"), max_length=40)
    function_call_id = models.CharField(_("functionCallIdentifier"), max_length=120)
    outcome = models.CharField(_("outcome"), max_length=40)
    subject_code = models.CharField(_("subject code"), max_length=20, blank=True)
    reason_code = models.CharField(_("reason code"), max_length=20, blank=True)
    message = models.CharField(_("message"), max_length=500, blank=True)
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    request = models.JSONField(_("request"), default=dict, blank=True)
    response = models.JSONField(_("response"), default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("operator"),
        related_name="+",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    created_at = models.DateTimeField(_("when"), default=timezone.now)

    class Meta:
        verbose_name = _("ES2+ call")
        verbose_name_plural = _("ES2+ calls")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.function} {self.outcome}"
