"""The customer's portal pages: account home, line detail with install codes, own settings."""
import zoneinfo
from urllib.parse import quote

import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from django.views.i18n import set_language as django_set_language

from . import selectors
from .forms import ProfileForm
from .models import Line
from .usage_chart import build_chart, chart_window

IOS_INSTALL_URL = "https://esimsetup.apple.com/esim_qrcode_provisioning?carddata="


@login_required
@require_GET
def home(request):
    lines = list(selectors.lines_for_user(request.user))
    zone = timezone.get_current_timezone()
    days, since = chart_window(now=timezone.now(), zone=zone)
    usage = selectors.daily_usage_for_lines(lines, since=since, zone=zone)
    entries = [{"line": line, "chart": build_chart(days=days, usage=usage[line.pk])} for line in lines]
    return render(request, "accounts/home.html", {"entries": entries})


@login_required
@require_GET
def line_detail(request, line_id: int):
    try:
        line = selectors.line_for_user(request.user, line_id)
    except Line.DoesNotExist:
        raise Http404
    lpa = line.lpa_string
    qr_svg = segno.make(lpa, error="m").svg_inline(
        scale=5, border=4, light="#fff", omitsize=True, title=_("QR code of the activation code")
    )
    context = {
        "line": line,
        "lpa": lpa,
        # segno escapes the title; the SVG is ours, not user input.
        "qr_svg": mark_safe(qr_svg.replace("<svg ", '<svg role="img" ', 1)),
        "ios_install_url": IOS_INSTALL_URL + quote(lpa, safe=""),
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

