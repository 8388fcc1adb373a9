"""The auto-renewal rule form. Money is entered in major units as a decimal and stored as
integer minor units; no float on the way."""

from decimal import Decimal, InvalidOperation

from django import forms
from django.utils.translation import gettext_lazy as _
from djstripe.models import PaymentMethod

from accounts.models import Package
from payments import gateways
from payments.money import format_money, to_minor
from payments.money import to_decimal as to_major

from .models import RenewalRule, RetryPolicy

MB = 1024**2


def payment_method_choices(user) -> list[tuple[str, str]]:
    """The customer's saved methods, from the payments mirror (no call to Stripe); the default is
    always offered."""
    choices = [("", _("My default card"))]
    customer = gateways.customer_for_user(user)
    if customer is not None:
        for method in PaymentMethod.objects.filter(customer=customer).order_by("created", "id"):
            choices.append((method.id, gateways.payment_method_summary(method)))
    return choices


class PackageChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Package) -> str:
        return f"{obj.localized_name} — {format_money(obj.price_minor, obj.currency)}"


class RenewalRuleForm(forms.Form):
    enabled = forms.BooleanField(label=_("Renew automatically"), required=False)
    package = PackageChoiceField(label=_("Package to buy"), queryset=Package.objects.none(), empty_label=None)
    trigger_data_below_mb = forms.IntegerField(
        label=_("When data remaining is at most (MB)"), required=False, min_value=0, max_value=10_000_000
    )
    trigger_hours_before_expiry = forms.IntegerField(
        label=_("When validity ends within (hours)"), required=False, min_value=1, max_value=24 * 365
    )
    payment_method_id = forms.ChoiceField(label=_("Payment method"), required=False)
    overage_policy = forms.ChoiceField(
        label=_("When data runs out before the renewal"), choices=RenewalRule.OveragePolicy.choices
    )
    overage_cap_mb = forms.IntegerField(label=_("Overage cap (MB)"), required=False, min_value=1, max_value=1_000_000)
    max_renewals_per_day = forms.IntegerField(
        label=_("At most this many renewals per 24 hours"), min_value=1, max_value=10, initial=2
    )
    monthly_spend_cap = forms.DecimalField(
        label=_("Monthly spend cap"),
        required=False,
        min_value=Decimal("0"),
        max_digits=12,
        decimal_places=3,
        help_text=_("In the package's currency. Empty: no cap."),
    )

    def __init__(self, *args, user, policy: RetryPolicy, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy = policy
        self.fields["package"].queryset = Package.objects.filter(active=True).order_by(
            "currency", "price_minor", "name"
        )
        self.fields["payment_method_id"].choices = payment_method_choices(user)

    @classmethod
    def initial_for(cls, rule: RenewalRule | None) -> dict:
        if rule is None:
            return {"enabled": True, "max_renewals_per_day": 2, "overage_policy": RenewalRule.OveragePolicy.BLOCK}
        return {
            "enabled": rule.enabled,
            "package": rule.package_id,
            "trigger_data_below_mb": rule.trigger_data_below_mb,
            "trigger_hours_before_expiry": rule.trigger_hours_before_expiry,
            "payment_method_id": rule.payment_method_id,
            "overage_policy": rule.overage_policy,
            "overage_cap_mb": rule.overage_cap_mb,
            "max_renewals_per_day": rule.max_renewals_per_day,
            "monthly_spend_cap": to_major(rule.monthly_spend_cap_minor, rule.package.currency)
            if rule.monthly_spend_cap_minor is not None
            else None,
        }

    def clean(self):
        data = super().clean()
        package: Package | None = data.get("package")
        data_mb = data.get("trigger_data_below_mb")
        hours = data.get("trigger_hours_before_expiry")
        if data.get("enabled") and data_mb is None and hours is None:
            raise forms.ValidationError(
                _("Choose at least one trigger: a data threshold or a time before the validity ends.")
            )
        if package is not None:
            if package.price_minor < self.policy.minimum_renewal_minor:
                self.add_error(
                    "package",
                    _("The minimum renewal amount is %(minimum)s.")
                    % {"minimum": format_money(self.policy.minimum_renewal_minor, package.currency)},
                )
            # A threshold the new package cannot lift would renew again at once, and again.
            if data_mb is not None and data_mb * MB >= package.data_allowance_bytes:
                self.add_error("trigger_data_below_mb", _("The threshold must be below the package's allowance."))
            if hours is not None and hours >= package.validity_days * 24:
                self.add_error("trigger_hours_before_expiry", _("This must be shorter than the package's validity."))
        policy_name = data.get("overage_policy")
        cap = data.get("overage_cap_mb")
        if policy_name == RenewalRule.OveragePolicy.BLOCK and cap is not None:
            self.add_error("overage_cap_mb", _("An overage cap only applies when data continues after it runs out."))
        if (
            policy_name in (RenewalRule.OveragePolicy.DEDUCT_FROM_NEXT, RenewalRule.OveragePolicy.BILL_OVERAGE)
            and cap is None
        ):
            self.add_error("overage_cap_mb", _("Set how much data may continue after it runs out."))
        spend_cap = data.get("monthly_spend_cap")
        if spend_cap is not None and package is not None:
            try:
                cap_minor = to_minor(spend_cap, package.currency)
            except InvalidOperation:
                self.add_error("monthly_spend_cap", _("Enter a valid amount."))
            else:
                if spend_cap != to_major(cap_minor, package.currency):
                    self.add_error(
                        "monthly_spend_cap",
                        _("Too many decimal places for %(currency)s.") % {"currency": package.currency},
                    )
                elif cap_minor < package.price_minor:
                    self.add_error(
                        "monthly_spend_cap",
                        _("The monthly cap must allow at least one renewal (%(price)s).")
                        % {"price": format_money(package.price_minor, package.currency)},
                    )
                else:
                    data["monthly_spend_cap_minor"] = cap_minor
        return data

    def rule_values(self) -> dict:
        data = self.cleaned_data
        return {
            "enabled": bool(data["enabled"]),
            "package": data["package"],
            "trigger_data_below_mb": data.get("trigger_data_below_mb"),
            "trigger_hours_before_expiry": data.get("trigger_hours_before_expiry"),
            "payment_method_id": data.get("payment_method_id") or "",
            "overage_policy": data["overage_policy"],
            "overage_cap_mb": data.get("overage_cap_mb"),
            "max_renewals_per_day": data["max_renewals_per_day"],
            "monthly_spend_cap_minor": data.get("monthly_spend_cap_minor"),
        }

    def payment_method_label(self) -> str:
        return str(dict(self.fields["payment_method_id"].choices).get(self.cleaned_data.get("payment_method_id") or ""))


class CloseAccountForm(forms.Form):
    """The customer's last word before their account is closed (they re-authenticated already:
    allauth's reauthentication flow guards the POST)."""

    confirm = forms.BooleanField(
        label=_("I understand that my account will be closed for good and cannot be restored."),
        required=True,
        error_messages={"required": _("Tick the box to confirm.")},
    )
