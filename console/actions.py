"""Operator actions for every app's admin: each one shows a confirmation page first (with a reason
where the action needs one), then calls the owning app's service per object and writes the change
history. Who may run which action is a permission of the operator roles (console/roles.py)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

# The customer's own export's escaping, for every text cell: names, labels and the
# processor's messages are typed by others, and a cell starting with "=" is a formula.
from payments.views import _csv_cell

OPERATOR_PERMISSIONS = (
    "retry_renewal",
    "cancel_renewal",
    "suspend_line",
    "resume_line",
    "refund_charge",
    "email_customer",
    "import_lines",
    "view_operations",
    "adjust_usage",
    "close_account",
    "export_customer_data",
)


@dataclass
class Outcome:
    """What one object's action did: done, or why not (shown to the operator)."""

    done: bool
    message: str = ""


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"), max_length=200, required=False, widget=forms.TextInput(attrs={"size": 60})
    )

    def __init__(self, *args, reason_required: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = reason_required


class OperatorPermissionsMixin:
    """`has_<codename>_permission` for the operator roles' action rights, so an action declares
    `allowed_permissions = ("refund_charge",)` and the admin hides it from those without it."""

    def _operator_may(self, request, codename: str) -> bool:
        return request.user.has_perm(f"accounts.{codename}")

    def has_retry_renewal_permission(self, request):
        return self._operator_may(request, "retry_renewal")

    def has_cancel_renewal_permission(self, request):
        return self._operator_may(request, "cancel_renewal")

    def has_suspend_line_permission(self, request):
        return self._operator_may(request, "suspend_line")

    def has_resume_line_permission(self, request):
        return self._operator_may(request, "resume_line")

    def has_refund_charge_permission(self, request):
        return self._operator_may(request, "refund_charge")

    def has_email_customer_permission(self, request):
        return self._operator_may(request, "email_customer")

    def has_import_lines_permission(self, request):
        return self._operator_may(request, "import_lines")

    def has_adjust_usage_permission(self, request):
        return self._operator_may(request, "adjust_usage")

    def has_view_operations_permission(self, request):
        return self._operator_may(request, "view_operations")

    def has_close_account_permission(self, request):
        return self._operator_may(request, "close_account")

    def has_export_customer_data_permission(self, request):
        return self._operator_may(request, "export_customer_data")


def confirmed_action(
    *,
    name: str,
    description,
    permission: str,
    perform: Callable[..., Outcome],
    reason_required: bool = False,
    warning=None,
):
    """An admin action that asks first. `perform(request=, obj=, reason=, now=)` does one object."""

    def action(modeladmin, request, queryset):
        if request.POST.get("post") == "yes":
            form = ReasonForm(request.POST, reason_required=reason_required)
            if form.is_valid():
                now = timezone.now()
                done = 0
                for obj in queryset:
                    outcome = perform(request=request, obj=obj, reason=form.cleaned_data["reason"], now=now)
                    if outcome.done:
                        done += 1
                    else:
                        modeladmin.message_user(request, f"{obj}: {outcome.message}", messages.WARNING)
                modeladmin.message_user(
                    request,
                    ngettext("%(action)s: %(count)d object done.", "%(action)s: %(count)d objects done.", done)
                    % {"action": description, "count": done},
                    messages.SUCCESS if done else messages.WARNING,
                )
                return None
        else:
            form = ReasonForm(reason_required=reason_required)
        opts = modeladmin.model._meta
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": description,
            "action_name": name,
            "action_description": description,
            "warning": warning,
            "objects": list(queryset),
            "form": form,
            "opts": opts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": modeladmin.media,
        }
        return TemplateResponse(request, "admin/accounts/confirm_action.html", context)

    action.__name__ = name
    return admin.action(description=description, permissions=[permission])(action)


def csv_export_action(*, name: str, filename: str, header: list, rows: Callable[[Iterable], Iterable[list]]):
    """An action that downloads the selected rows as CSV (money already formatted by `rows`)."""

    def action(modeladmin, request, queryset):
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response.write("\ufeff")  # spreadsheet programs read UTF-8 (Chinese names) only with a BOM
        writer = csv.writer(response)
        writer.writerow([str(title) for title in header])
        for row in rows(queryset):
            writer.writerow([_csv_cell(cell) if isinstance(cell, str) else cell for cell in row])
        return response

    action.__name__ = name
    return admin.action(description=_("Export the selected rows as CSV"), permissions=["view"])(action)
