"""HTTP in and out of provisioning (docs/provisioning.md): buying a new eSIM, the "Preparing your
eSIM" page and its status endpoint (owner only: anything else is a 404), and the SM-DP+'s
HandleDownloadProgressInfo callback (shared-secret header)."""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from urllib.parse import quote

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Package
from payments import selectors as payment_selectors
from payments.forms import PayNowForm
from payments.models import Charge
from payments.rate_limits import limit
from payments.services import errors, on_session
from payments.services import methods as method_services
from payments.views import after_payment

from . import selectors, services
from .models import ProfileOrder

logger = logging.getLogger(__name__)


class BuyForm(PayNowForm):
    """The pay form with the purchase's own token: the same page sent twice is one purchase
    (payments.services.on_session.purchase_new_line, `submission`)."""

    submission = forms.RegexField(
        regex=r"^[0-9a-f]{32}$",
        widget=forms.HiddenInput,
        required=False,  # a page shown before the token existed still buys (without the guard)
        error_messages={"invalid": gettext_lazy("This page has expired. Please try again.")},
    )


IOS_INSTALL_URL = "https://esimsetup.apple.com/esim_qrcode_provisioning?carddata="
CALLBACK_SECRET_HEADER = "X-ES2-Callback-Secret"


@login_required
@require_http_methods(["GET", "POST"])
@limit("payment")
def buy(request, package_id: int):
    package = get_object_or_404(Package, pk=package_id, active=True)
    # Only the types the operator takes in the package's currency (docs/payment-methods.md).
    methods = method_services.usable_methods_for_currency(request.user, package.currency)
    form = BuyForm(
        request.POST if request.method == "POST" else None,
        methods=methods,
        initial={"submission": uuid.uuid4().hex},
    )
    if request.method == "POST" and form.is_valid():
        try:
            charge = on_session.purchase_new_line(
                user=request.user,
                package=package,
                payment_method_id=form.cleaned_data["payment_method"],
                submission=form.cleaned_data["submission"],
            )
        except errors.PaymentMethodNotFound:
            form.add_error("payment_method", _("Choose one of your payment methods."))
        except errors.NotPayable as exc:
            form.add_error(None, exc.user_message)
        else:
            return after_payment(request, charge, retry_url=reverse("provisioning:buy", args=[package.pk]))
    if "submission" in form.errors:
        form.data = form.data.copy()
        form.data["submission"] = uuid.uuid4().hex  # a fresh page, not the expired or forged token
    return render(
        request,
        "provisioning/buy.html",
        {"package": package, "form": form, "methods": methods},
        status=400 if form.errors else 200,
    )


@login_required
@require_GET
def charge_order(request, charge_id: int):
    """Where a paid new-eSIM purchase lands (payments' after_payment, 3-D Secure included)."""
    try:
        charge = payment_selectors.charge_for_user(request.user, charge_id)
    except Charge.DoesNotExist:
        raise Http404 from None
    order = selectors.order_for_charge(request.user, charge.pk)
    if order is None:
        messages.info(request, _("Your payment is being confirmed. Your eSIM is prepared as soon as it is."))
        return redirect("payments:history")
    return redirect("provisioning:order", order_id=order.pk)


def _install_context(order: ProfileOrder) -> dict:
    lpa = order.activation_code
    if not lpa:
        return {}
    qr_svg = segno.make(lpa, error="m").svg_inline(
        scale=5, border=4, light="#fff", omitsize=True, title=_("QR code of the activation code")
    )
    return {
        "lpa": lpa,
        # segno escapes the title; the SVG is ours, not user input.
        "qr_svg": mark_safe(qr_svg.replace("<svg ", '<svg role="img" ', 1)),
        "ios_install_url": IOS_INSTALL_URL + quote(lpa, safe=""),
    }


@login_required
@require_GET
def order_detail(request, order_id: int):
    try:
        order = selectors.order_for_user(request.user, order_id)
    except ProfileOrder.DoesNotExist:
        raise Http404 from None
    context = {"order": order, "steps": order.install_steps(), **_install_context(order)}
    return render(request, "provisioning/order.html", context)


@login_required
@require_GET
def order_status(request, order_id: int):
    """What the "Preparing" page polls: the order's state and, once ready, the install codes."""
    try:
        order = selectors.order_for_user(request.user, order_id)
    except ProfileOrder.DoesNotExist:
        return JsonResponse({"error": "not_found"}, status=404)
    body: dict = {"status": order.status, "label": order.get_status_display(), "ready": order.ready}
    body["steps_html"] = render_to_string(
        "provisioning/_install_steps.html", {"steps": order.install_steps()}, request=request
    )
    if order.ready:
        install = _install_context(order)
        body.update(lpa=install["lpa"], qr_svg=str(install["qr_svg"]), ios_install_url=install["ios_install_url"])
    if order.line_id:
        body.update(
            line_url=reverse("accounts:line_detail", args=[order.line_id]),
            renewal_url=reverse("renewals:rule", args=[order.line_id]),
        )
    return JsonResponse(body)


@csrf_exempt
@require_POST
def handle_download_progress_info(request):
    """ES2+ HandleDownloadProgressInfo from the SM-DP+: authenticated by the shared secret in
    X-ES2-Callback-Secret (docs/provisioning.md, "Callback"); 204 once recorded, also for a
    notification seen before."""
    secret = settings.SMDP_CALLBACK_SECRET
    given = request.headers.get(CALLBACK_SECRET_HEADER, "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        logger.warning("esim_notification_refused reason=unauthenticated")
        return JsonResponse({"error": "unauthenticated"}, status=401)
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not payload.get("iccid") or "notificationPointId" not in payload:
        logger.warning("esim_notification_refused reason=malformed")
        return JsonResponse({"error": "malformed"}, status=400)
    try:
        services.record_notification(payload=payload)
    except services.UnknownProfile:
        logger.warning("esim_notification_unknown_iccid iccid=%s", payload.get("iccid"))
        return JsonResponse({"error": "unknown_iccid"}, status=404)
    return HttpResponse(status=204)
