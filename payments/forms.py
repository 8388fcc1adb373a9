"""Forms of the payments pages. Card numbers and IBANs are never fields here: Stripe.js sends
them from the browser to Stripe; our forms carry only ids."""

from datetime import date

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.utils.translation import gettext_lazy as _

from accounts.models import Line, Package
from accounts.selectors import lines_for_user

from .models import Charge
from .money import format_money


def method_choices(methods) -> list[tuple[str, str]]:
    choices = []
    for method in methods:
        label = method.summary
        if method.is_default:
            label = _("%(method)s (default)") % {"method": label}
        choices.append((method.id, label))
    return choices


class PackageChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Package) -> str:
        return f"{obj.localized_name} — {format_money(obj.price_minor, obj.currency)}"


class PayNowForm(forms.Form):
    payment_method = forms.ChoiceField(label=_("Pay with"), widget=forms.RadioSelect)

    def __init__(self, *args, methods, preselect: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["payment_method"].choices = method_choices(methods)
        # `preselect` "" means: choose none (every saved card just failed; add a new one).
        default = next((m.id for m in methods if m.is_default), methods[0].id if methods else None)
        chosen = default if preselect is None else preselect
        if chosen:
            self.fields["payment_method"].initial = chosen


class BuyPackageForm(PayNowForm):
    package = PackageChoiceField(
        label=_("Package"), queryset=Package.objects.filter(active=True), empty_label=None, widget=forms.RadioSelect
    )
    field_order = ["package", "payment_method"]

    def __init__(self, *args, methods, **kwargs):
        super().__init__(*args, methods=methods, **kwargs)
        first = self.fields["package"].queryset.first()
        if first is not None:
            self.fields["package"].initial = first.pk


class FinishBindingForm(forms.Form):
    setup_intent_id = forms.CharField(max_length=255, validators=[RegexValidator(r"^seti_[A-Za-z0-9_]+$")])
    make_default = forms.BooleanField(required=False)


class StartBindingForm(forms.Form):
    method_type = forms.ChoiceField(choices=[("card", "card"), ("sepa_debit", "sepa_debit"), ("paypal", "paypal")])


class RemoveMethodForm(forms.Form):
    replacement = forms.ChoiceField(label=_("Replacement for auto-renewal"), required=False)

    def __init__(self, *args, methods, removing: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["replacement"].choices = [("", "—")] + method_choices(
            [m for m in methods if m.id != removing and not m.expired]
        )


# The history's dates become aware datetimes in the customer's zone, one day past the end date:
# at the ends of the calendar (0001-01-01, 9999-12-31) that overflows, a 500. No charge is older
# than the service or centuries ahead.
HISTORY_FIRST_DATE = date(2000, 1, 1)
HISTORY_LAST_DATE = date(2999, 12, 31)


def _history_date_field(label):
    message = _("Enter a date from 2000-01-01 to 2999-12-31.")
    return forms.DateField(
        label=label,
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        validators=[
            MinValueValidator(HISTORY_FIRST_DATE, message=message),
            MaxValueValidator(HISTORY_LAST_DATE, message=message),
        ],
    )


class ListedChoiceIterator(forms.models.ModelChoiceIterator):
    """Reads the choices with one plain SELECT. Django's iterator streams them through a server-side
    cursor (DECLARE … WITH HOLD, FETCH, CLOSE outside a transaction): three round trips for the
    handful of lines a customer has (docs/portal-performance.md)."""

    def __iter__(self):
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        for obj in self.queryset:
            yield self.choice(obj)


class ListedModelChoiceField(forms.ModelChoiceField):
    iterator = ListedChoiceIterator


class HistoryFilterForm(forms.Form):
    line = ListedModelChoiceField(
        label=_("Line"), queryset=Line.objects.none(), required=False, empty_label=_("All lines")
    )
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("All statuses")), *Charge.Status.choices]
    )
    date_from = _history_date_field(_("From"))
    date_to = _history_date_field(_("To"))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["line"].queryset = lines_for_user(user)
        self.fields["line"].label_from_instance = lambda line: line.label or line.iccid

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data
