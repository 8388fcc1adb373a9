"""The catalogue: packages, and the refusal of an edit that would break the auto-renewal rules that
buy them."""

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from accounts.models import Package
from console.admin.display import ReadableFieldsMixin
from payments.money import currency_exponent, to_decimal, to_minor
from renewals.models import RenewalRule

from .history import ChangeHistoryInline, HistoryAdminMixin

MB = 1024**2  # rule thresholds are in MB (renewals.services.MB)


class PackageForm(forms.ModelForm):
    """Refuses an allowance or validity that the enabled auto-renewal rules buying this package
    could not lift their lines above: each renewal would leave the line at its trigger and the
    next would open at once, up to the rule's daily cap (the rule form checks the same per rule)."""

    # Operators type data in MB and prices in the currency's units (docs/console.md, "Units and time
    # zones"); the model keeps bytes and minor units.
    data_allowance_mb = forms.IntegerField(label=_("data allowance (MB)"), min_value=0, help_text=_("1 GB = 1024 MB"))
    price = forms.DecimalField(label=_("price"), min_value=0, max_digits=12, decimal_places=3)

    class Meta:
        model = Package
        fields = [
            "name",
            "name_zh_hans",
            "description",
            "description_zh_hans",
            "data_allowance_mb",
            "validity_days",
            "price",
            "currency",
            "active",
            "listed",
            "coverage_region",
            "coverage_countries",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial.setdefault("data_allowance_mb", self.instance.data_allowance_bytes // MB)
            self.initial.setdefault("price", to_decimal(self.instance.price_minor, self.instance.currency))

    def clean(self):
        data = super().clean()
        if data.get("data_allowance_mb") is not None:
            data["data_allowance_bytes"] = data["data_allowance_mb"] * MB
        price, currency = data.get("price"), data.get("currency")
        if price is not None and currency:
            if -price.as_tuple().exponent > currency_exponent(currency):  # type: ignore[operator]
                self.add_error(
                    "price",
                    _("%(currency)s has %(places)d decimal places.")
                    % {"currency": currency.upper(), "places": currency_exponent(currency)},
                )
            else:
                data["price_minor"] = to_minor(price, currency)
        if self.instance.pk is None:
            return data
        rules = RenewalRule.objects.filter(package=self.instance, enabled=True).select_related("line")
        allowance, days = data.get("data_allowance_bytes"), data.get("validity_days")
        if allowance is not None:
            self._refuse_if_rules(
                rules.filter(trigger_data_below_mb__gte=-(-allowance // MB)),
                "data_allowance_mb",
                ngettext_lazy(
                    "%(count)d auto-renewal rule buys this package with a data threshold at or above this allowance: each"
                    " renewal would leave its line at the threshold and start the next at once (lines: %(lines)s)."
                    " Lower that threshold first.",
                    "%(count)d auto-renewal rules buy this package with data thresholds at or above this allowance: each"
                    " renewal would leave its line at the threshold and start the next at once (lines: %(lines)s)."
                    " Lower those thresholds first.",
                    "count",
                ),
            )
        if days is not None:
            self._refuse_if_rules(
                rules.filter(trigger_hours_before_expiry__gte=days * 24),
                "validity_days",
                ngettext_lazy(
                    "%(count)d auto-renewal rule buys this package and renews as long or longer before the validity ends"
                    " than this validity: each renewal would start the next at once (lines: %(lines)s). Shorten that time first.",
                    "%(count)d auto-renewal rules buy this package and renew as long or longer before the validity ends"
                    " than this validity: each renewal would start the next at once (lines: %(lines)s). Shorten those times first.",
                    "count",
                ),
            )
        return data

    def _post_clean(self):
        for name in ("data_allowance_bytes", "price_minor"):
            if name in self.cleaned_data:
                setattr(self.instance, name, self.cleaned_data[name])
        super()._post_clean()

    def _refuse_if_rules(self, rules, field: str, message) -> None:
        count = rules.count()
        if count:
            lines = ", ".join(rule.line.iccid for rule in rules.order_by("line_id")[:5]) + (", …" if count > 5 else "")
            self.add_error(field, message % {"count": count, "lines": lines})


@admin.register(Package)
class PackageAdmin(ReadableFieldsMixin, HistoryAdminMixin, admin.ModelAdmin):
    form = PackageForm
    list_display = [
        "name",
        "name_zh_hans",
        "data_allowance_bytes",
        "validity_days",
        "price_minor",
        "currency",
        "active",
        "listed",
    ]
    list_filter = ["active", "listed", "currency"]
    search_fields = ["name", "name_zh_hans"]
    ordering = ["currency", "price_minor", "name"]
    inlines = [ChangeHistoryInline]
