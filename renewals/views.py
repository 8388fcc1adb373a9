"""The customer's auto-renewal pages: the rule form, its confirmation page, turning it off, and
paying a renewal now. Only the confirmation's POST saves; every line is looked up among the
customer's own (404 else)."""

import logging

from allauth.account.decorators import reauthentication_required
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors as account_selectors
from accounts.models import Line
from accounts.services import erasure
from payments import selectors as payment_selectors
from payments import views as payment_views
from payments.forms import PayNowForm
from payments.gateways import GatewayError
from payments.models import Charge
from payments.money import format_money
from payments.rate_limits import limit
from payments.services import errors as payment_errors
from payments.services import methods as method_services

from . import selectors
from .forms import CloseAccountForm, RenewalRuleForm
from .models import Renewal, RenewalRule, RetryPolicy
from .services import account_closure, data_export, pay_now, rules

logger = logging.getLogger(__name__)


def _own_line(request, line_id: int) -> Line:
    try:
        return account_selectors.line_for_user(request.user, line_id)
    except Line.DoesNotExist:
        raise Http404 from None


def named_method(user, payment_method_id: str) -> str:
    """The card a rule charges, as the customer knows it ("Visa •••• 4242, expires 12/30"): the
    chosen one, else the default. Never "my default payment method": the customer checks a card."""
    methods = payment_selectors.payment_methods_for_user(user)
    chosen = next(
        (m for m in methods if (m.id == payment_method_id if payment_method_id else m.is_default)),
        None,
    )
    if chosen is None:
        return _("your default card (you have none yet: add one before the first renewal)")
    return chosen.described()


def describe_rule(values: dict, method_label: str, policy: RetryPolicy) -> str:
    """Everything the rule will do, with prices, in sentences a customer can check: the trigger,
    the package and its price, the card by name, the limits, and what happens if data runs out
    first (the overage choice, its cap and its price). docs/pages.md."""
    package = values["package"]
    if not values["enabled"]:
        return _("Auto-renewal will be off: we will not charge you automatically.")
    mb, hours = values["trigger_data_below_mb"], values["trigger_hours_before_expiry"]
    if mb is not None and hours is not None:
        when = _("When this line has %(mb)s MB or less left, or its validity ends within %(hours)s hours") % {
            "mb": mb,
            "hours": hours,
        }
    elif mb is not None:
        when = _("When this line has %(mb)s MB or less left") % {"mb": mb}
    else:
        when = _("When this line's validity ends within %(hours)s hours") % {"hours": hours}
    count = values["max_renewals_per_day"]
    sentence = _("%(when)s, we will charge %(amount)s for %(package)s to %(method)s, %(times)s") % {
        "when": when,
        "method": method_label,
        "amount": format_money(package.price_minor, package.currency),
        "package": package.localized_name,
        "times": ngettext("at most once a day", "at most %(count)s times a day", count) % {"count": count},
    }
    cap = values["monthly_spend_cap_minor"]
    if cap is not None:
        sentence = _("%(sentence)s and %(cap)s a month.") % {
            "sentence": sentence,
            "cap": format_money(cap, package.currency),
        }
    else:
        sentence = _("%(sentence)s.") % {"sentence": sentence}
    overage = values.get("overage_policy") or RenewalRule.OveragePolicy.BLOCK
    overage_cap = values.get("overage_cap_mb")
    if overage == RenewalRule.OveragePolicy.DEDUCT_FROM_NEXT:
        then = _(
            "If data runs out before the renewal, you may use up to %(cap)s MB more, deducted from the next package."
        ) % {"cap": overage_cap}
    elif overage == RenewalRule.OveragePolicy.BILL_OVERAGE:
        then = _(
            "If data runs out before the renewal, you may use up to %(cap)s MB more, billed at %(price)s per GB "
            "with the next renewal."
        ) % {"cap": overage_cap, "price": format_money(policy.overage_price_per_gb_minor, package.currency)}
    else:
        then = _("If data runs out before the renewal, data stops until the line is renewed.")
    return _("%(sentence)s %(then)s") % {"sentence": sentence, "then": then}


def rule_values(rule: RenewalRule) -> dict:
    return {
        "enabled": rule.enabled,
        "package": rule.package,
        "trigger_data_below_mb": rule.trigger_data_below_mb,
        "trigger_hours_before_expiry": rule.trigger_hours_before_expiry,
        "max_renewals_per_day": rule.max_renewals_per_day,
        "monthly_spend_cap_minor": rule.monthly_spend_cap_minor,
        "overage_policy": rule.overage_policy,
        "overage_cap_mb": rule.overage_cap_mb,
    }


@login_required
def rule_page(request, line_id: int):
    line = _own_line(request, line_id)
    rule = selectors.rule_for_line(line)
    policy = RetryPolicy.current()
    if request.method == "POST":
        form = RenewalRuleForm(request.POST, user=request.user, policy=policy)
        if form.is_valid():
            values = form.rule_values()
            if "confirm" in request.POST:
                rules.save_rule(line=line, values=values, now=timezone.now())
                messages.success(request, _("Your auto-renewal rule is saved."))
                return redirect("renewals:rule", line_id=line.pk)
            if "edit" not in request.POST:
                return render(
                    request,
                    "renewals/confirm.html",
                    {
                        "line": line,
                        "form": form,
                        "summary": describe_rule(
                            values, named_method(request.user, values["payment_method_id"]), policy
                        ),
                    },
                )
    else:
        form = RenewalRuleForm(initial=RenewalRuleForm.initial_for(rule), user=request.user, policy=policy)
    current = None
    if rule is not None and not rule.enabled:
        current = _("Auto-renewal is off.")
    elif rule is not None:
        current = describe_rule(rule_values(rule), named_method(request.user, rule.payment_method_id), policy)
    return render(
        request,
        "renewals/rule.html",
        {
            "current": current,
            "line": line,
            "rule": rule,
            "form": form,
            "policy": policy,
            "renewals": line.renewals.select_related("package")[:10],
            "minimum": policy.minimum_renewal_minor,
            "accepted_methods": method_services.method_types_for_user(request.user),
        },
    )


@login_required
@require_POST
def turn_off(request, line_id: int):
    line = _own_line(request, line_id)
    rule = RenewalRule.objects.filter(line=line).first()
    if rule is not None and rule.enabled:
        cancelled = rules.turn_off_rule(rule=rule, now=timezone.now())
        messages.success(
            request, _("Auto-renewal is off.") + (" " + _("The pending renewal was cancelled.") if cancelled else "")
        )
    else:
        messages.info(request, _("Auto-renewal is already off."))
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = ""
    # A plain redirect: redirect() would try a relative "next" such as "0" as a URL name (a 500).
    return HttpResponseRedirect(target) if target else redirect("renewals:rule", line_id=line.pk)


def best_method_for(renewal, methods) -> str:
    """The card to preselect on the pay-now page: not the one whose renewal attempt just failed
    (nor an expired one: `methods` holds only usable ones), the default first; none when every
    saved card just failed, so the customer adds a new one."""
    failed = set(
        Charge.objects.filter(renewal=renewal, status=Charge.Status.FAILED).values_list("payment_method_id", flat=True)
    )
    candidates = [m for m in methods if m.id not in failed]
    chosen = next((m for m in candidates if m.is_default), candidates[0] if candidates else None)
    return chosen.id if chosen is not None else ""


def _rule_charges_another_method(renewal, charge) -> bool:
    rule = RenewalRule.objects.filter(line=renewal.line, enabled=True).first()
    if rule is None or not charge.payment_method_id:
        return False
    current = rule.payment_method_id or payment_selectors.default_method_id(renewal.line.owner)
    return current != charge.payment_method_id


@login_required
@require_http_methods(["GET", "POST"])
def paid(request, renewal_id: int):
    """After a successful pay-now with another card than the rule's: offer, in one click, to make
    that card the one auto-renewal charges (POST). The renewal's line must be the customer's."""
    renewal = Renewal.objects.select_related("line", "package").filter(pk=renewal_id, line__owner=request.user).first()
    if renewal is None:
        raise Http404
    charge = (
        Charge.objects.filter(renewal=renewal, user=request.user, status=Charge.Status.SUCCEEDED)
        .order_by("-id")
        .first()
    )
    if charge is None:
        raise Http404
    if request.method == "POST":
        try:
            rules.use_method_for_auto_renewal(
                user=request.user, line=renewal.line, payment_method_id=charge.payment_method_id
            )
        except (RenewalRule.DoesNotExist, payment_errors.PaymentMethodNotFound):
            messages.error(request, _("This card can no longer be used for auto-renewal."))
        else:
            messages.success(
                request,
                _("Auto-renewal will now charge %(method)s.") % {"method": charge.payment_method_summary},
            )
        return redirect("accounts:line_detail", line_id=renewal.line_id)
    return render(
        request,
        "renewals/paid.html",
        {"renewal": renewal, "charge": charge, "offer": _rule_charges_another_method(renewal, charge)},
    )


@login_required
@require_http_methods(["GET", "POST"])
@limit("payment")
def pay_renewal(request, renewal_id: int):
    """Pay a renewal now, on-session. Served in payments' URL namespace (payments:pay_renewal,
    esimsite/urls.py): payments cannot import this page, which belongs to renewals."""
    try:
        renewal = pay_now.payable_renewal(user=request.user, renewal_id=renewal_id)
    except payment_errors.NotPayable as exc:
        if exc.code == "not_found":
            raise Http404 from None
        messages.info(request, exc.user_message)
        return redirect("payments:history")
    # Only the types the operator takes in this currency (docs/payment-methods.md): no SEPA for CNY.
    methods = method_services.usable_methods_for_currency(request.user, renewal.currency)
    form = PayNowForm(
        request.POST if request.method == "POST" else None,
        methods=methods,
        preselect=best_method_for(renewal, methods),
    )
    if request.method == "POST" and form.is_valid():
        try:
            charge = pay_now.pay_renewal_now(
                user=request.user, renewal=renewal, payment_method_id=form.cleaned_data["payment_method"]
            )
        except payment_errors.PaymentMethodNotFound:
            form.add_error("payment_method", _("Choose one of your payment methods."))
        except payment_errors.NotPayable as exc:
            form.add_error(None, exc.user_message)
        else:
            if charge.status == Charge.Status.SUCCEEDED and _rule_charges_another_method(renewal, charge):
                messages.success(request, _("Payment received. Thank you!"))
                return redirect("renewals:paid", renewal_id=renewal.pk)
            return payment_views.after_payment(
                request, charge, retry_url=reverse("payments:pay_renewal", args=[renewal.pk])
            )
    return render(
        request,
        "payments/pay_renewal.html",
        {"renewal": renewal, "form": form, "methods": methods},
        status=400 if form.errors else 200,
    )


# --- the customer's data rights (docs/data-rights.md) ---------------------------------------------
# Served under accounts' namespace (accounts:download_data, accounts:close_account, joined in
# esimsite/urls.py): they read and close everything up to renewals, which accounts cannot import.


@login_required
@require_GET
def download_data(request):
    """The customer's own data as a JSON file, streamed (usage records can be many)."""
    now = timezone.now()
    response = StreamingHttpResponse(
        data_export.export_user_data(request.user, now=now), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{data_export.export_filename(request.user, now)}"'
    response["Cache-Control"] = "no-store"
    logger.info("data_export_downloaded user=%s by=customer", request.user.pk)
    return response


@login_required
@reauthentication_required(allow_get=True)
@require_http_methods(["GET", "POST"])
def close_account(request):
    """What closing does, a box to tick, and the button. The POST needs a recent sign-in (allauth
    asks for the password, or a code, again); a payment still at the processor refuses it."""
    form = CloseAccountForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        user = request.user
        try:
            account_closure.close_account(
                user=user, actor=user, closed_by=account_closure.CUSTOMER, reason="", now=timezone.now()
            )
        except account_closure.PaymentInFlight:
            form.add_error(
                None,
                _(
                    "A payment of yours is being processed right now. Auto-renewal is off, so no new "
                    "payment will start; please try again in a few minutes."
                ),
            )
        except GatewayError:
            form.add_error(None, _("The payment processor did not answer. Nothing was closed; please try again."))
        except erasure.CustomerOnly:
            form.add_error(None, _("Staff accounts are closed by an administrator."))
        else:
            logout(request)
            return render(request, "renewals/account_closed.html")
    lines = account_selectors.lines_for_user(request.user).exclude(status=Line.Status.TERMINATED)
    return render(request, "renewals/close_account.html", {"form": form, "lines": lines})
