"""Admin pages that are not one model's list: the line CSV import (upload, preview, import),
the operations page, assigning a line to a customer. All sit behind the two-factor admin site and the operator roles."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.http import Http404
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views import View

from accounts.models import ICCID_VALIDATOR, Line, Package
from accounts.services import line_assignment, notices
from accounts.services.line_import import FQDN, MATCHING_ID, ImportFileError, import_lines, parse
from accounts.templatetags.data_units import signed_data_size
from partner.services import adjustments
from payments.money import format_money_code
from provisioning import pool_import

from . import operations

# The preview sends the file's text back in a hidden field, and Django refuses a POST whose fields
# pass DATA_UPLOAD_MAX_MEMORY_SIZE: so that size is the import's one limit, checked at the preview
# on the text as the browser will send it back (line ends as CRLF, UTF-8), less room for the other
# fields. Whatever the preview accepts, the confirmation carries.
CONFIRM_FIELDS_ROOM = 8 * 1024
MB = 1024**2


def max_import_bytes() -> int:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return (limit if limit is not None else 5 * 1024 * 1024) - CONFIRM_FIELDS_ROOM


def confirm_size(text: str) -> int:
    return len(text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("utf-8"))


class LineImportForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"),
        required=False,
        help_text=_(
            "Columns: iccid, smdp_address, matching_id; optional: package (a package name or number) and owner"
            " (the customer's email, or phone as +8613800138000, who is then told by email)."
        ),
    )
    # The file's text travels back with the preview; it is checked again before anything is created.
    text = forms.CharField(widget=forms.HiddenInput, required=False)

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload is not None:
            too_large = forms.ValidationError(
                _("The file is larger than %(size)s: split it into smaller files.")
                % {"size": filesizeformat(max_import_bytes())}
            )
            if upload.size > max_import_bytes():
                raise too_large
            try:
                data["text"] = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise forms.ValidationError(_("The file must be UTF-8 text.")) from None
            if confirm_size(data["text"]) > max_import_bytes():
                raise too_large
        if not data.get("text"):
            raise forms.ValidationError(_("Choose a CSV file."))
        return data


class CsvImportView(View):
    """An operator's CSV import in the admin: upload, a preview of every row with its errors
    (nothing written), then "import the good rows" in one transaction, the rejected rows listed.
    A subclass names its form, template, parser, importer and words; the permission is importing
    lines (docs/console.md)."""

    model_admin = None
    form_class: type[forms.Form] = forms.Form
    template = ""
    title = ""
    changelist = ""
    meanwhile = ""  # the form error when a concurrent import took some rows first

    def parse(self, text: str) -> list:
        raise NotImplementedError

    def import_rows(self, *, text: str, actor, now) -> tuple[list, list]:
        raise NotImplementedError

    def imported(self, count: int) -> str:
        raise NotImplementedError

    def dispatch(self, request, *args, **kwargs):
        if not request.user.has_perm("accounts.import_lines"):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def render(self, request, **context):
        admin = self.model_admin
        return TemplateResponse(
            request,
            self.template,
            {**admin.admin_site.each_context(request), "opts": admin.model._meta, "title": self.title, **context},
        )

    def get(self, request):
        return self.render(request, form=self.form_class())

    def post(self, request):
        form = self.form_class(request.POST, request.FILES)
        if not form.is_valid():
            return self.render(request, form=form)
        text = form.cleaned_data["text"]
        try:
            if request.POST.get("confirm") != "yes":
                rows = self.parse(text)
                return self.render(
                    request,
                    form=self.form_class(initial={"text": text}),
                    rows=rows,
                    preview=True,
                    good=sum(row.ok for row in rows),
                    bad=sum(not row.ok for row in rows),
                )
            created, bad = self.import_rows(text=text, actor=request.user, now=timezone.now())
        except ImportFileError as exc:
            form.add_error(None, str(exc))
            return self.render(request, form=form)
        except IntegrityError:
            form.add_error(None, self.meanwhile)
            return self.render(request, form=form)
        messages.success(request, self.imported(len(created)))
        if bad:
            return self.render(request, form=self.form_class(), rows=bad, rejected=True, bad=len(bad))
        return redirect(self.changelist)


class LineImportView(CsvImportView):
    form_class = LineImportForm
    template = "admin/accounts/line/import.html"
    title = _("Import lines from CSV")
    changelist = "admin:accounts_line_changelist"
    meanwhile = _("Another import added some of these lines meanwhile: nothing was imported, try again.")

    def parse(self, text):
        return parse(text)

    def import_rows(self, *, text, actor, now):
        return import_lines(text=text, actor=actor, now=now)

    def imported(self, count):
        return ngettext("%(count)d line imported.", "%(count)d lines imported.", count) % {"count": count}


class ProfileImportForm(LineImportForm):
    file = forms.FileField(
        label=_("CSV file"),
        required=False,
        help_text=_('Columns: iccid; optional: profile_type (the SM-DP+ profile type, "default" when empty).'),
    )


class ProfileImportView(CsvImportView):
    """The profile pool's CSV import (docs/provisioning.md, "Profiles"): the line import's upload,
    preview and confirmation, with the same permission."""

    form_class = ProfileImportForm
    template = "admin/provisioning/profile/import.html"
    title = _("Import profiles from CSV")
    changelist = "admin:provisioning_profile_changelist"
    meanwhile = _("Another import added some of these profiles meanwhile: nothing was imported, try again.")

    def parse(self, text):
        return pool_import.parse(text)

    def import_rows(self, *, text, actor, now):
        return pool_import.import_profiles(text=text, actor=actor, now=now)

    def imported(self, count):
        return ngettext("%(count)d profile imported.", "%(count)d profiles imported.", count) % {"count": count}


def operations_view(request, admin_site):
    if not request.user.has_perm("accounts.view_operations"):
        raise PermissionDenied
    now = timezone.now()
    day_start, month_start = operations.day_and_month_start(now)

    def money_rows(since):
        return [
            {
                **row,
                "formatted": format_money_code(row["amount_minor"], row["currency"]),
                "gross": format_money_code(row["gross_minor"], row["currency"]),
                "refunded": format_money_code(row["refunded_minor"], row["currency"]),
            }
            for row in operations.revenue(since=since)
        ]

    return TemplateResponse(
        request,
        "admin/accounts/operations.html",
        {
            **admin_site.each_context(request),
            "title": _("Operations"),
            "now": now,
            "counts": operations.renewal_counts(now=now),
            "revenue_today": money_rows(day_start),
            "revenue_month": money_rows(month_start),
            "alerts": operations.open_alerts(),
            "network_dead_letters": operations.dead_lettered_commands(),
            "failed_notices": notices.failed_notices(),
            "esim_failed": list(operations.failed_esim_orders()),
            "esim_stuck": list(operations.stuck_esim_orders()),
            "esim_pool": operations.profile_pool(),
            "dispatcher": operations.dispatcher_job(now=now),
            "usage": operations.usage_job(now=now),
            "processor_writes": operations.processor_writes(),
        },
    )


class UsageCorrectionForm(forms.Form):
    """An operator's correction of a line's usage: signed megabytes (negative gives usage back)
    and a reason, which the history and the customer's line page keep."""

    megabytes = forms.IntegerField(
        label=_("Correction (MB)"),
        min_value=-1_000_000,
        max_value=1_000_000,
        help_text=_(
            "Negative gives usage back (a double report, a goodwill credit); positive adds usage the partner did not report."
        ),
    )
    reason = forms.CharField(label=_("Reason"), max_length=500, widget=forms.TextInput(attrs={"size": 60}))

    def clean_megabytes(self):
        value = self.cleaned_data["megabytes"]
        if value == 0:
            raise forms.ValidationError(_("A correction of 0 bytes changes nothing."))
        return value

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(_("A correction needs a reason."))
        return reason


class UsageCorrectionView(View):
    """Correct usage: the form, a confirmation page with the line before and after, then the
    correction (partner.services.adjustments). Refusals are form errors, never a 500."""

    model_admin = None

    def dispatch(self, request, *args, **kwargs):
        if not request.user.has_perm("accounts.adjust_usage"):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def render(self, request, line, **context):
        admin = self.model_admin
        return TemplateResponse(
            request,
            "admin/accounts/line/adjust_usage.html",
            {
                **admin.admin_site.each_context(request),
                "opts": admin.model._meta,
                "original": line,
                "title": _("Correct usage of %(line)s") % {"line": line},
                "line": line,
                **context,
            },
        )

    def get_line(self, line_id):
        try:
            return Line.objects.select_related("package").get(pk=line_id)
        except (Line.DoesNotExist, ValueError):
            raise Http404 from None

    def get(self, request, line_id):
        # "Change the correction" comes back here with the values it confirmed, to edit rather than retype.
        initial = {name: request.GET[name] for name in ("megabytes", "reason") if name in request.GET}
        return self.render(request, self.get_line(line_id), form=UsageCorrectionForm(initial=initial))

    def post(self, request, line_id):
        line = self.get_line(line_id)
        form = UsageCorrectionForm(request.POST)
        if not form.is_valid():
            return self.render(request, line, form=form)
        bytes_ = form.cleaned_data["megabytes"] * MB
        try:
            if request.POST.get("confirm") != "yes":
                preview = adjustments.preview_adjustment(line_id=line.pk, bytes=bytes_)
                return self.render(
                    request,
                    line,
                    form=form,
                    preview=preview,
                    bytes=bytes_,
                    status_before=Line.Status(preview.before.status).label,
                    status_after=Line.Status(preview.after.status).label,
                )
            adjustments.adjust_usage(
                line_id=line.pk,
                bytes=bytes_,
                reason=form.cleaned_data["reason"],
                actor=request.user,
                now=timezone.now(),
            )
        except adjustments.AdjustmentRefused as exc:
            form.add_error(None, str(exc))
            return self.render(request, line, form=form)
        messages.success(
            request, _("Usage of %(line)s corrected by %(bytes)s.") % {"line": line, "bytes": signed_data_size(bytes_)}
        )
        return redirect("admin:accounts_line_change", line.pk)


class AssignLineForm(forms.Form):
    """Give a line to a customer found by email or phone (accounts.services.line_assignment):
    data in MB or GB and validity default to the package's; validity starts on a day in the
    operator's time zone."""

    UNITS = {"MB": MB, "GB": 1024**3}

    customer = forms.CharField(
        label=_("Customer's email or phone"),
        max_length=254,
        help_text=_("An email address, or a phone number in international form such as +8613800138000."),
    )
    package = forms.ModelChoiceField(label=_("Package"), queryset=Package.objects.filter(active=True))
    iccid = forms.CharField(label=_("ICCID"), max_length=20, validators=[ICCID_VALIDATOR])
    smdp_address = forms.RegexField(
        label=_("SM-DP+ address"),
        regex=FQDN,
        max_length=253,
        error_messages={"invalid": _("The SM-DP+ address must be a host name such as smdp.example.com.")},
    )
    matching_id = forms.RegexField(
        label=_("Matching ID"),
        regex=MATCHING_ID,
        max_length=255,
        error_messages={"invalid": _("The matching ID must be letters, digits and dashes.")},
    )
    label = forms.CharField(label=_("Label"), max_length=100, required=False)
    data_amount = forms.DecimalField(
        label=_("Data"),
        required=False,
        min_value=0,
        max_value=100_000,
        decimal_places=2,
        help_text=_("Empty: the package's allowance."),
    )
    data_unit = forms.ChoiceField(label=_("Unit"), choices=[("GB", "GB"), ("MB", "MB")], initial="GB")
    starts_on = forms.DateField(
        label=_("Valid from"), help_text=_("The validity starts at the beginning of this day, in your time zone.")
    )
    validity_days = forms.IntegerField(
        label=_("Validity (days)"), required=False, min_value=1, max_value=3650, help_text=_("Empty: the package's.")
    )
    reason = forms.CharField(label=_("Note for the history"), max_length=500, required=False)

    def clean_customer(self):
        try:
            return line_assignment.find_customer(self.cleaned_data["customer"])
        except line_assignment.AssignmentRefused as exc:
            raise forms.ValidationError(str(exc)) from None

    def data_bytes(self) -> int | None:
        amount = self.cleaned_data.get("data_amount")
        if amount is None:
            return None
        return int(amount * self.UNITS[self.cleaned_data["data_unit"]])


class AssignLineView(View):
    """Assign a line: the form (reached from the customer's page with the customer filled in), a
    confirmation page with what will be written, then the line, its history (ChangeRecord and the
    admin's LogEntry) and the customer's email. Refusals are form errors, never a 500."""

    model_admin = None

    def dispatch(self, request, *args, **kwargs):
        if not request.user.has_perm("accounts.assign_line"):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def render(self, request, **context):
        admin = self.model_admin
        return TemplateResponse(
            request,
            "admin/accounts/line/assign.html",
            {
                **admin.admin_site.each_context(request),
                "opts": admin.model._meta,
                "title": _("Assign a line"),
                **context,
            },
        )

    def get(self, request):
        initial = {"customer": request.GET.get("customer", "")[:254], "starts_on": timezone.localdate()}
        return self.render(request, form=AssignLineForm(initial=initial))

    def post(self, request):
        form = AssignLineForm(request.POST)
        if not form.is_valid():
            return self.render(request, form=form)
        data = form.cleaned_data
        now = timezone.now()
        try:
            assignment = line_assignment.plan_assignment(
                owner=data["customer"],
                package=data["package"],
                iccid=data["iccid"],
                smdp_address=data["smdp_address"],
                matching_id=data["matching_id"],
                label=data["label"],
                data_bytes=form.data_bytes(),
                starts_on=data["starts_on"],
                validity_days=data["validity_days"],
                zone=timezone.get_current_timezone(),
                now=now,
            )
            if request.POST.get("edit"):
                return self.render(request, form=form)
            if request.POST.get("confirm") != "yes":
                return self.render(request, form=form, assignment=assignment, preview=True)
            line = line_assignment.assign_line(
                assignment=assignment, actor=request.user, reason=data["reason"], now=now
            )
        except line_assignment.AssignmentRefused as exc:
            form.add_error(None, str(exc))
            return self.render(request, form=form)
        self.model_admin.log_addition(
            request, line, [{"added": {"name": "assignment", "object": f"{line.owner} · {line.package}"}}]
        )
        messages.success(
            request,
            _("Line %(line)s assigned to %(customer)s; they are told by email.")
            % {"line": line.iccid, "customer": line.owner},
        )
        return redirect("admin:accounts_user_change", line.owner_id)
