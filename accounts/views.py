"""The customer's portal pages: account home, line detail with install codes, own settings."""

import functools
import zoneinfo
from urllib.parse import quote

import segno
from allauth.account import app_settings as allauth_settings
from allauth.account import views as allauth_views
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.functional import cached_property
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from django.views.i18n import set_language as django_set_language

from . import catalogue, selectors
from .adapter import SMS_FAILURE_SESSION_KEY
from .forms import ProfileForm
from .models import Line
from .usage_chart import build_chart, chart_window

IOS_INSTALL_URL = "https://esimsetup.apple.com/esim_qrcode_provisioning?carddata="


@functools.lru_cache(maxsize=512)
def activation_qr_svg(lpa: str, title: str) -> str:
    """The activation code's QR code as inline SVG. Encoding it is a good part of the line page's
    CPU and the answer depends only on the code and the title's language: each worker keeps the
    last ones it drew (docs/portal-performance.md)."""
    svg = segno.make(lpa, error="m").svg_inline(scale=5, border=4, light="#fff", omitsize=True, title=title)
    return svg.replace("<svg ", '<svg role="img" ', 1)


@login_required
@require_GET
def home(request):
    lines = list(selectors.lines_for_user(request.user))
    zone = timezone.get_current_timezone()
    days, since = chart_window(now=timezone.now(), zone=zone)
    usage = selectors.daily_usage_for_lines(lines, since=since, zone=zone)
    entries = [{"line": line, "chart": build_chart(days=days, usage=usage[line.pk])} for line in lines]
    return render(request, "accounts/home.html", {"entries": entries, "lines": lines})


@require_GET
def plans(request):
    """The public catalogue (docs/catalogue.md): the plans for a new eSIM and the device check,
    which answers a plain GET form (?device=…) so that it works without a script."""
    language = translation.get_language()
    packages = [
        {"package": package, "coverage": catalogue.coverage_names(package, language)}
        for package in catalogue.packages_for_sale()
    ]
    device = request.GET.get("device", "").strip()[: catalogue.MAX_QUERY]
    context = {
        "plans": packages,
        "device": device,
        "device_matches": catalogue.find_devices(device) if device else None,
        "device_models": catalogue.all_device_models(),
        "device_families": catalogue.device_families(),
        # The same list for the script that answers as the customer types (static/js/device-check.js).
        "device_index": [
            [family.brand, model, family.label, family.caveat_text]
            for family in catalogue.device_families()
            for model in family.models
        ],
        "has_lines": request.user.is_authenticated and selectors.lines_for_user(request.user).exists(),
    }
    return render(request, "accounts/plans.html", context)


@login_required
@require_GET
def line_detail(request, line_id: int):
    try:
        line = selectors.line_for_user(request.user, line_id)
    except Line.DoesNotExist:
        raise Http404 from None
    lpa = line.lpa_string
    context = {
        "line": line,
        "lpa": lpa,
        # segno escapes the title; the SVG is ours, not user input.
        "qr_svg": mark_safe(activation_qr_svg(lpa, _("QR code of the activation code"))),
        "ios_install_url": IOS_INSTALL_URL + quote(lpa, safe=""),
        "corrections": list(selectors.usage_corrections_for_line(line)),
    }
    return render(request, "accounts/line_detail.html", context)


@login_required
def profile(request):
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        translation.activate(user.language)
        timezone.activate(zoneinfo.ZoneInfo(user.time_zone))
        messages.success(request, _("Your settings were saved."))
        # UserLanguageMiddleware refreshes the language cookie on this response.
        return redirect("accounts:settings")
    return render(request, "accounts/settings.html", {"form": form})


@require_GET
def web_manifest(request):
    """The web app manifest, so "add to home screen" shows the name in the visitor's language and
    our icons (docs/pages.md). The icons themselves are static files served by WhiteNoise."""
    icons = [
        {"src": static(f"icons/icon-{size}.png"), "sizes": f"{size}x{size}", "type": "image/png"} for size in (192, 512)
    ] + [
        {
            "src": static(f"icons/icon-maskable-{size}.png"),
            "sizes": f"{size}x{size}",
            "type": "image/png",
            "purpose": "maskable",
        }
        for size in (192, 512)
    ]
    manifest = {
        "name": _("Axis eSIM"),
        "short_name": _("Axis eSIM"),
        "lang": translation.get_language(),
        "start_url": reverse("accounts:home"),
        "scope": "/",
        "display": "standalone",
        "background_color": "#f6f7f9",
        "theme_color": "#0b5fff",
        "icons": icons,
    }
    response = JsonResponse(manifest, json_dumps_params={"ensure_ascii": False})
    response["Content-Type"] = "application/manifest+json"
    return response


@require_POST
def set_language(request):
    """Django's set_language (cookie, safe redirect), plus remembering the choice on the user so
    it follows them to other browsers and to emails."""
    response = django_set_language(request)
    language = request.POST.get("language", "")
    if request.user.is_authenticated and language in dict(settings.LANGUAGES):
        request.user.language = language
        request.user.save(update_fields=["language"])
    return response


# --- sign-up with email or phone ------------------------------------------------------------------


class _SignupView(allauth_views.SignupView):
    """allauth's sign-up page, told which of the two the customer chose (?with=phone)."""

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        kwargs["signup_with"] = self.request.GET.get("with", "")
        return kwargs


signup = _SignupView.as_view()


# --- phone verification at sign-up ---------------------------------------------------------------


def _show_error(form, field: str, message: str) -> None:
    # add_error() wants a validated form; on an unbound one the errors are only for display.
    form.errors[field] = form.error_class([message], renderer=form.renderer)


class SMSFailureFormErrorMixin:
    """allauth's verify page after the code could not be sent (accounts.adapter): instead of "we've
    sent a code", a form error that says what to do: another number if the provider refused this
    one, or later if the provider (or our account with it) failed. docs/notifications.md#sms."""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)  # type: ignore[misc]
        failure = self.request.session.pop(SMS_FAILURE_SESSION_KEY, None)  # type: ignore[attr-defined]
        if failure == "rejected":
            message = _("We could not send a text message to %(phone)s. Check the number, or use a different one.") % {
                "phone": context["phone"]
            }
            if context.get("can_change"):
                _show_error(context["change_form"], "phone", message)
            else:
                _show_error(context["verify_form"], NON_FIELD_ERRORS, message)
        elif failure:
            _show_error(
                context["verify_form"],
                NON_FIELD_ERRORS,
                _("We could not send the code right now. Please try again later."),
            )
        context["sms_not_sent"] = bool(failure)
        return context


class _VerifyPhoneInSettingsView(SMSFailureFormErrorMixin, allauth_views._VerifyPhoneChangeView):
    """allauth's page for a signed-in customer's new number, with the send failure shown."""


class _VerifyPhoneAtSignupView(SMSFailureFormErrorMixin, allauth_views._VerifyPhoneSignupView):
    """allauth's sign-up phone step, the same whether or not the number was registered. allauth
    drops a sign-up whose number is taken (texting the owner) and goes on with no user, and then
    leaves out the "Use a different phone number" form, which a stranger could see to probe numbers
    (its own TODO: an on-the-fly sign-up would be needed to really change the number). Here that
    form is shown and answered alike: the owner of a registered new number is texted as allauth
    does for a real sign-up, a free one gets nothing (there is no account to verify for it), and
    the page says a code was sent either way. Someone who owns the second number can still tell."""

    def _pretends_change(self) -> bool:
        # The quota is 0 unless ACCOUNT_PHONE_VERIFICATION_SUPPORTS_CHANGE is on.
        return self.process.user is None and not self.process.is_change_quota_reached(
            allauth_settings.PHONE_VERIFICATION_MAX_CHANGE_COUNT
        )

    @cached_property
    def _action(self):
        if self.request.POST.get("action") == "change" and self._pretends_change():
            return "change"
        return super()._action

    def _change_form_valid(self, form):
        if self.process.user is not None:
            return super()._change_form_valid(form)
        self.process.state["account_already_exists"] = form.account_already_exists
        self.process.record_change(phone=form.cleaned_data["phone"])
        # Rate-limited, "code sent" message and state saved as for a real change; the only SMS
        # is the registered owner's warning.
        self.process.send(skip_enumeration_sms=not form.account_already_exists)
        return HttpResponseRedirect(self.passthrough_next_url(reverse("account_verify_phone")))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["can_change"] = context["can_change"] or self._pretends_change()
        return context


def verify_phone(request):
    """allauth's `account_verify_phone`, with the sign-up step replaced (see above)."""
    if request.user.is_authenticated:
        return _VerifyPhoneInSettingsView.as_view()(request)
    return _VerifyPhoneAtSignupView.as_view()(request)
