"""HTTP in and out for payment methods, purchases, history and receipts. Every view
is for the signed-in customer's own objects: anything else is a 404.

A little over our ~400-line habit: the views are thin (each calls one service) and share the
lookups that make another customer's object a 404; splitting them would spread that rule."""

import csv
import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Line, Package
from accounts.selectors import line_for_user

from . import gateways, processor_errors, selectors
from .forms import BuyPackageForm, FinishBindingForm, HistoryFilterForm, RemoveMethodForm, StartBindingForm
from .gateways import GatewayError
from .models import Charge
from .money import plain_amount
from .rate_limits import limit
from .services import errors, on_session
from .services import methods as method_services

logger = logging.getLogger(__name__)

HISTORY_PAGE_SIZE = 20


def _safe_next(request, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def _stripe_context() -> dict:
    return {"stripe_js_url": settings.STRIPE_JS_URL, "stripe_publishable_key": settings.STRIPE_PUBLISHABLE_KEY}


# --- payment methods ---------------------------------------------------------------------------


def _methods_page(request, *, status: int = 200, error: str = ""):
    context = {
        "methods": selectors.payment_methods_for_user(request.user),
        "method_types": method_services.method_types_for_user(request.user),
        "next": _safe_next(request, ""),
        "error": error,
        "processor_errors": processor_errors.for_browser(),
        **_stripe_context(),
    }
    return render(request, "payments/methods.html", context, status=status)


@login_required
@require_GET
def methods(request):
    return _methods_page(request)


@login_required
@require_POST
@limit("payment_method", json=True)
def method_setup(request):
    """JSON for the page's script: a fresh SetupIntent's client secret."""
    form = StartBindingForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"error": _("This payment method is not available.")}, status=400)
    try:
        start = method_services.start_binding(user=request.user, method_type=form.cleaned_data["method_type"])
    except errors.PaymentError as exc:
        return JsonResponse(
            {"error": exc.user_message}, status=400 if isinstance(exc, errors.MethodUnavailable) else 502
        )
    return JsonResponse({"client_secret": start.client_secret, "setup_intent_id": start.setup_intent_id})


def _finish(request, data):
    form = FinishBindingForm(data)
    if not form.is_valid():
        return _methods_page(request, status=400, error=_("The payment method could not be set up. Nothing was saved."))
    try:
        method = method_services.finish_binding(
            user=request.user,
            setup_intent_id=form.cleaned_data["setup_intent_id"],
            make_default=form.cleaned_data["make_default"],
        )
    except errors.PaymentError as exc:
        return _methods_page(request, status=400, error=exc.user_message)
    messages.success(request, _("%(method)s was added.") % {"method": gateways.payment_method_summary(method)})
    # Not redirect(): it would try a relative "next" such as "0" as a URL name (a 500).
    return HttpResponseRedirect(_safe_next(request, reverse("payments:methods")))


@login_required
@require_POST
@limit("payment_method")
def method_finish(request):
    """Saves a confirmed method (and may make it the default, which can retry a failed renewal):
    limited like choosing a default. The page also reports declined confirmations here, so each
    confirmation counts, not only each SetupIntent."""
    return _finish(request, request.POST)


@login_required
@require_GET
def method_return(request):
    """Where Stripe sends the customer back after a redirect-based method (PayPal, a bank's page):
    a GET, which any site can make a browser send, so it changes nothing. It shows what was
    approved and a button that posts it, with the token, to method_finish."""
    form = FinishBindingForm(
        {"setup_intent_id": request.GET.get("setup_intent", ""), "make_default": request.GET.get("make_default")}
    )
    if not form.is_valid():
        return _methods_page(request, status=400, error=_("The payment method could not be set up. Nothing was saved."))
    try:
        summary = method_services.approved_method_summary(
            user=request.user, setup_intent_id=form.cleaned_data["setup_intent_id"]
        )
    except errors.PaymentError as exc:
        return _methods_page(request, status=400, error=exc.user_message)
    return render(
        request, "payments/method_return.html", {"form": form, "summary": summary, "next": _safe_next(request, "")}
    )


@login_required
@require_POST
@limit("payment_method")
def method_default(request, payment_method_id: str):
    try:
        method_services.set_default_method(user=request.user, payment_method_id=payment_method_id)
    except errors.PaymentMethodNotFound:
        raise Http404 from None
    except errors.PaymentError as exc:
        messages.error(request, exc.user_message)
    else:
        messages.success(request, _("Default payment method changed."))
    return redirect("payments:methods")


@login_required
@require_http_methods(["GET", "POST"])
@limit("payment_method")  # removing the default makes the replacement the default
def method_remove(request, payment_method_id: str):
    methods = selectors.payment_methods_for_user(request.user)
    method = next((m for m in methods if m.id == payment_method_id), None)
    if method is None:
        raise Http404
    rules = method_services.rules_using_method(user=request.user, payment_method_id=method.id)
    form = RemoveMethodForm(request.POST if request.method == "POST" else None, methods=methods, removing=method.id)
    if request.method == "POST" and form.is_valid():
        try:
            method_services.remove_method(
                user=request.user, payment_method_id=method.id, replacement_id=form.cleaned_data["replacement"]
            )
        except errors.ReplacementRequired as exc:
            form.add_error("replacement", exc.user_message)
        except errors.PaymentMethodNotFound:
            raise Http404 from None
        except errors.PaymentError as exc:
            form.add_error(None, exc.user_message)
        else:
            messages.success(request, _("%(method)s was removed.") % {"method": method.summary})
            return redirect("payments:methods")
    return render(
        request,
        "payments/method_remove.html",
        {"method": method, "rules": rules, "form": form},
        status=400 if form.errors else 200,
    )


# --- paying --------------------------------------------------------------------------------------


def after_payment(request, charge: Charge, *, retry_url: str):
    if (
        charge.status == Charge.Status.SUCCEEDED
        and charge.line_id is None
        and charge.purpose == Charge.Purpose.PURCHASE
    ):
        # A new eSIM: its "Preparing your eSIM" page (provisioning's, joined by URL name only).
        return redirect("provisioning:charge_order", charge_id=charge.pk)
    if charge.status == Charge.Status.SUCCEEDED:
        messages.success(request, _("Payment received. Thank you!"))
        return redirect("payments:receipt", charge_id=charge.pk)
    if charge.status == Charge.Status.REQUIRES_ACTION:
        return redirect("payments:authenticate", charge_id=charge.pk)
    if charge.status == Charge.Status.PENDING and charge.decline_kind == Charge.DeclineKind.PROCESSOR_ERROR:
        messages.warning(
            request,
            _(
                "We could not confirm the payment with the payment processor yet. "
                "We are checking it; nothing will be charged twice."
            ),
        )
        return redirect("payments:history")
    if charge.status in (Charge.Status.REFUND_DUE, Charge.Status.REFUNDED):
        # Paid after it could be used (the line was terminated, or we had closed it): given back.
        messages.warning(
            request,
            _(
                "Your payment arrived after it could no longer be used, so nothing was added. "
                "The full amount is being refunded."
            ),
        )
        return redirect("payments:history")
    if charge.status == Charge.Status.PENDING:
        # Direct debits settle later: the webhook (or reconciliation) applies the package then.
        messages.info(request, _("Your bank is processing the payment. The package is added as soon as it settles."))
        return redirect("payments:history")
    messages.error(
        request, _("The payment failed: %(reason)s Nothing was charged.") % {"reason": failure_reason(charge)}
    )
    return redirect(retry_url)


def failure_reason(charge: Charge) -> str:
    """A translated reason for the customer from the processor's code."""
    if charge.failure_code in processor_errors.CODES:
        return processor_errors.customer_message(charge.failure_code)
    if charge.decline_kind == Charge.DeclineKind.PROCESSOR_ERROR:
        return _("The payment processor did not answer.")
    return processor_errors.customer_message(
        charge.failure_code, error_type="card_error" if charge.failure_code else ""
    )


@login_required
@require_http_methods(["GET", "POST"])
@limit("payment")
def buy(request, line_id: int):
    try:
        line = line_for_user(request.user, line_id)
    except Line.DoesNotExist:
        raise Http404 from None
    # Only methods some package on sale can be paid with are listed, and the chosen package's
    # currency decides at POST (docs/payment-methods.md): a SEPA mandate never pays CNY.
    currencies = set(Package.objects.filter(active=True).values_list("currency", flat=True))
    offered = {t for currency in currencies for t in method_services.method_types_for_currency(currency)}
    methods = [m for m in selectors.usable_payment_methods_for_user(request.user) if m.type in offered]
    form = BuyPackageForm(request.POST if request.method == "POST" else None, methods=methods)
    if request.method == "POST" and form.is_valid():
        package = form.cleaned_data["package"]
        chosen = next(m for m in methods if m.id == form.cleaned_data["payment_method"])
        if chosen.type not in method_services.method_types_for_currency(package.currency):
            form.add_error(
                "payment_method",
                _("This payment method cannot pay in %(currency)s. Choose another one.")
                % {"currency": package.currency.upper()},
            )
    if request.method == "POST" and form.is_valid():
        try:
            charge = on_session.purchase_package(
                user=request.user,
                line=line,
                package=form.cleaned_data["package"],
                payment_method_id=form.cleaned_data["payment_method"],
            )
        except errors.PaymentMethodNotFound:
            form.add_error("payment_method", _("Choose one of your payment methods."))
        except errors.NotPayable as exc:
            form.add_error(None, exc.user_message)
        else:
            return after_payment(request, charge, retry_url=reverse("payments:buy", args=[line.pk]))
    return render(
        request,
        "payments/buy.html",
        {"line": line, "form": form, "methods": methods, "has_packages": Package.objects.filter(active=True).exists()},
        status=400 if form.errors else 200,
    )


def _retry_url(charge: Charge) -> str:
    if charge.renewal_id:
        return reverse("payments:pay_renewal", args=[charge.renewal_id])
    if charge.line_id:
        return reverse("payments:buy", args=[charge.line_id])
    if charge.purpose == Charge.Purpose.PURCHASE and charge.package_id:
        return reverse("provisioning:buy", args=[charge.package_id])
    return reverse("payments:history")


@login_required
@require_GET
def authenticate(request, charge_id: int):
    """The 3-D Secure step: Stripe.js shows the bank's challenge, then the page posts back."""
    try:
        charge = selectors.charge_for_user(request.user, charge_id)
    except Charge.DoesNotExist:
        raise Http404 from None
    if charge.status != Charge.Status.REQUIRES_ACTION or not charge.payment_intent_id:
        return after_payment(request, charge, retry_url=_retry_url(charge))
    try:
        intent = gateways.retrieve_payment_intent(charge.payment_intent_id)
    except GatewayError as exc:
        messages.error(request, exc.user_message)
        return redirect("payments:history")
    return render(
        request,
        "payments/authenticate.html",
        {"charge": charge, "client_secret": intent["client_secret"], **_stripe_context()},
    )


@login_required
@require_POST
def complete(request, charge_id: int):
    try:
        charge = on_session.complete_authentication(user=request.user, charge_id=charge_id)
    except errors.NotPayable:
        raise Http404 from None
    if charge.status == Charge.Status.REQUIRES_ACTION:
        # The customer closed the challenge without an answer: the intent still waits.
        messages.error(request, _("The payment was not confirmed by your bank. Nothing was charged."))
        return redirect(_retry_url(charge))
    return after_payment(request, charge, retry_url=_retry_url(charge))


# --- history -------------------------------------------------------------------------------------


def _filtered_charges(request):
    form = HistoryFilterForm(request.GET or None, user=request.user)
    filters = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {
            "line_id": data["line"].pk if data["line"] else None,
            "status": data["status"],
            "date_from": data["date_from"],
            "date_to": data["date_to"],
        }
    return form, selectors.charges_for_user(request.user, **filters)


@login_required
@require_GET
def history(request):
    form, charges = _filtered_charges(request)
    page = Paginator(charges, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "payments/history.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "failure_reason": failure_reason,
            "rows": [
                (charge, failure_reason(charge) if charge.status in (Charge.Status.FAILED,) else "") for charge in page
            ],
        },
    )


def _csv_cell(value) -> str:
    # A cell starting with = + - @ is a formula to spreadsheets: neutralise it.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@login_required
@require_GET
def history_csv(request):
    _form, charges = _filtered_charges(request)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="transactions.csv"'
    response.write("\ufeff")  # spreadsheet programs read UTF-8 (Chinese names) only with the BOM
    writer = csv.writer(response)
    writer.writerow(
        [
            _("Date"),
            _("Line"),
            _("Package"),
            _("Purpose"),
            _("Amount"),
            _("Currency"),
            _("Payment method"),
            _("Status"),
            _("Failure reason"),
            _("Reference"),
        ]
    )
    for charge in charges.iterator():
        writer.writerow(
            [
                _csv_cell(v)
                for v in (
                    timezone.localtime(charge.created_at).isoformat(timespec="seconds"),
                    charge.line.iccid if charge.line else "",
                    charge.package.name if charge.package else "",
                    charge.get_purpose_display(),
                    plain_amount(charge.amount_minor, charge.currency),
                    charge.currency,
                    charge.payment_method_summary,
                    charge.get_status_display(),
                    failure_reason(charge) if charge.status == Charge.Status.FAILED else "",
                    charge.payment_intent_id or "",
                )
            ]
        )
    return response


@login_required
@require_GET
def receipt(request, charge_id: int):
    try:
        charge = selectors.charge_for_user(request.user, charge_id)
    except Charge.DoesNotExist:
        raise Http404 from None
    if charge.status not in Charge.MONEY_TAKEN:
        raise Http404
    return render(request, "payments/receipt.html", {"charge": charge})
