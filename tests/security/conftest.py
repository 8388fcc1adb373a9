"""The access matrix shared by the security tests: every URL the project serves, walked from the
root URLconf, and for each portal URL how to build it and its objects for one owner. A URL missing
from both the matrix and the out-of-scope list fails the tests, so a new view cannot be forgotten."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from django.apps import apps
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import Line
from payments import gateways
from payments.models import Charge
from payments.services import methods, on_session
from provisioning.models import ProfileOrder
from renewals.models import Renewal, RenewalRule, RetryPolicy
from tests.builders import make_charge, make_line, make_package, make_renewal, make_rule, make_user
from tests.payments.conftest import confirm_setup_as_browser, create_card

# --- the URLconf, walked --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    key: str  # the namespaced URL name, or the route when the pattern has no name
    route: str
    pattern: URLPattern

    @property
    def callback(self):
        return self.pattern.callback


def walk(patterns=None, prefix: str = "", namespace: str = ""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}:{pattern.namespace}".strip(":") if pattern.namespace else namespace
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        else:
            route = prefix + str(pattern.pattern)
            name = f"{namespace}:{pattern.name}".strip(":") if pattern.name else ""
            yield Endpoint(key=name or route, route=route, pattern=pattern)


def is_admin(endpoint: Endpoint) -> bool:
    return endpoint.route.startswith("admin/")


# Outside the portal matrix, each for a reason. Keys are URL names (or routes when unnamed).
OUT_OF_SCOPE = {
    "djstripe:djstripe_webhook_by_uuid": "Stripe's webhook: authenticated by its signature, tested in tests/payments/test_webhooks.py",
    "partner_api:usage": "the partner's usage API: authenticated by HMAC, tested in tests/partner/test_usage_api.py",
    "partner_api:openapi": "the partner API's public contract (no data)",
    "healthz": "the status probe: public by design, counts and ages only (console/health.py)",
    "healthz_live": "the liveness probe: public by design, says only ok (console/health.py)",
    "metrics": "Prometheus's scrape: a bearer token (METRICS_TOKEN), tested in tests/console/test_metrics.py",
    "healthz_ready": "the readiness probe: public by design, says ok/down/pending only (console/health.py)",
    "set_language": "Django's language switch: public, changes only the visitor's cookie",
    "accounts:web_manifest": "the web app manifest: public by design, the site's name and icons only (tests/accounts/test_icons.py)",
    "accounts:plans": "the public catalogue: listed packages and the device check, no customer data (tests/accounts/test_catalogue.py)",
    "accounts:set_language": "the language switch: public, changes the visitor's cookie and only their own saved language",
    "provisioning:handle_download_progress_info": "the SM-DP+'s ES2+ callback: authenticated by its shared-secret "
    "header, tested in tests/provisioning/test_pages.py",
}

# allauth's pages: public ones (sign-up, login, reset) and the signed-in user's own account pages,
# which take no object id of another user (the reset and confirmation keys are secrets).
ALLAUTH_PUBLIC = {
    "account_login",
    "account_signup",
    "account_reset_password",
    "account_reset_password_done",
    "account_reset_password_from_key",
    "account_reset_password_from_key_done",
    "account_confirm_email",
    "account_email_verification_sent",
    "account_inactive",
    "account_confirm_login_code",
    "account_verify_phone",
    "mfa_authenticate",
    "account_logout",
}
ALLAUTH_OWN_ACCOUNT = {
    "account_email",
    "account_change_password",
    "account_set_password",
    "account_reauthenticate",
    "account_change_phone",
    "mfa_index",
    "mfa_reauthenticate",
    "mfa_activate_totp",
    "mfa_deactivate_totp",
    "mfa_view_recovery_codes",
    "mfa_generate_recovery_codes",
    "mfa_download_recovery_codes",
}


# --- the world one matrix row runs in -------------------------------------------------------------


@dataclass
class World:
    owner: object
    other: object
    staff: object  # staff and superuser, but no two-factor step in the session
    package: object
    line: Line
    rule: RenewalRule
    renewal: Renewal  # failed: payable now
    receipt_charge: Charge  # succeeded
    action_charge: Charge  # waits for 3-D Secure, with a real PaymentIntent in localstripe
    method_id: str  # the owner's default card
    spare_method_id: str  # a second card of the owner's, used by no rule
    setup_intent_id: str  # confirmed by the owner's browser, not yet finished
    order: ProfileOrder  # a new eSIM of the owner's, ready to install
    paid_renewal: Renewal  # paid now with the spare card, which the rule does not charge
    markers: tuple[str, ...] = field(default=())  # text only the owner's pages may show


@pytest.fixture
def world(db) -> World:
    policy = RetryPolicy.current()
    policy.save()
    owner = make_user(email="owner@example.com")
    other = make_user(email="other@example.com")
    staff = make_user(email="staff@example.com", is_staff=True, is_superuser=True)
    package = make_package()
    line = make_line(owner=owner, package=package, label="Owner's phone")
    # Every user already has a Stripe customer, so a foreign request that creates nothing shows
    # as an unchanged database.
    customer = gateways.ensure_customer(owner)
    for user in (other, staff):
        gateways.ensure_customer(user)
    method = gateways.attach_payment_method(customer_id=customer.id, payment_method_id=create_card())
    gateways.set_default_payment_method(customer_id=customer.id, payment_method_id=method.id)
    spare = gateways.attach_payment_method(customer_id=customer.id, payment_method_id=create_card("5555555555554444"))
    secure = gateways.attach_payment_method(customer_id=customer.id, payment_method_id=create_card("4000002500003155"))
    action_charge = on_session.purchase_package(user=owner, line=line, package=package, payment_method_id=secure.id)
    assert action_charge.status == Charge.Status.REQUIRES_ACTION and action_charge.payment_intent_id
    start = methods.start_binding(user=owner, method_type="card")
    # A card of its own (last 4 5556, shown by the return page) so the page shows the owner's marker.
    assert confirm_setup_as_browser(start.client_secret, "4000056655665556").status_code == 200
    rule = make_rule(line=line, package=package)
    # The previous cycle, paid with the spare card (the "use this card" page after pay-now). It is
    # older than the failed renewal below: pay-now refuses a failed renewal that a newer one has
    # replaced (renewals.services.pay_now, "line_has_a_newer_renewal").
    paid_renewal = make_renewal(line=line, package=package, rule=rule, status=Renewal.Status.SUCCEEDED)
    make_charge(
        user=owner,
        line=line,
        package=package,
        renewal=paid_renewal,
        attempt=1,
        status=Charge.Status.SUCCEEDED,
        payment_method_id=spare.id,
        payment_method_summary="Mastercard •••• 4444",
    )
    renewal = make_renewal(line=line, package=package, rule=rule, status=Renewal.Status.FAILED, failures=3)
    receipt_charge = make_charge(
        user=owner,
        line=line,
        package=package,
        status=Charge.Status.SUCCEEDED,
        payment_intent_id="pi_owner_receipt_ref",
        payment_method_summary="Visa •••• 4242",
    )
    order = ProfileOrder.objects.create(
        user=owner,
        package=package,
        charge=make_charge(user=owner, line=None, package=package, status=Charge.Status.SUCCEEDED),
        status=ProfileOrder.Status.RELEASED,
        iccid="8999000000000000099",
        smdp_address="smdp.example",
        matching_id="OWNER-ORDER-MATCHING-ID",
    )
    return World(
        owner=owner,
        other=other,
        staff=staff,
        package=package,
        line=line,
        rule=rule,
        renewal=renewal,
        receipt_charge=receipt_charge,
        action_charge=action_charge,
        method_id=method.id,
        spare_method_id=spare.id,
        setup_intent_id=start.setup_intent_id,
        order=order,
        paid_renewal=paid_renewal,
        markers=(
            line.iccid,
            line.matching_id,
            "Owner&#x27;s phone",
            "Owner's phone",
            "pi_owner_receipt_ref",
            action_charge.payment_intent_id,
            method.id,
            spare.id,
            "Visa •••• 5556",
            owner.email,
            order.matching_id,
        ),
    )


# --- the portal matrix ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """How the owner reaches one portal URL. `get`/`post`: the owner's status, None when the view
    refuses that method (405). `objects`: the URL (or body) names an object of the owner's, so
    another customer gets `foreign` (404) and changes nothing."""

    name: str
    kwargs: Callable[[World], dict] = lambda w: {}
    query: Callable[[World], dict] = lambda w: {}
    get: int | None = 200
    post: int | None = None
    data: Callable[[World], dict] = lambda w: {}
    objects: bool = True
    foreign: int = 404
    json: bool = False

    def url(self, w: World) -> str:
        return reverse(self.name, kwargs=self.kwargs(w))


def _rule_form(w: World, **changes) -> dict:
    data = {
        "enabled": "on",
        "package": str(w.package.pk),
        "trigger_data_below_mb": "300",
        "trigger_hours_before_expiry": "",
        "payment_method_id": "",
        "overage_policy": "block",
        "overage_cap_mb": "",
        "max_renewals_per_day": "1",
        "monthly_spend_cap": "",
        "confirm": "",
    }
    data.update(changes)
    return data


MATRIX = [
    Row("accounts:home", objects=False),
    Row("accounts:line_detail", kwargs=lambda w: {"line_id": w.line.pk}),
    Row(
        "accounts:settings",
        objects=False,
        post=302,
        data=lambda w: {"name": "New name", "language": "en", "time_zone": "Europe/Berlin"},
    ),
    Row("payments:methods", objects=False),
    Row("payments:method_setup", objects=False, get=None, post=200, data=lambda w: {"method_type": "card"}, json=True),
    # The object is in the body: another customer's setup intent is refused as a form error.
    Row(
        "payments:method_finish",
        get=None,
        post=302,
        foreign=400,
        data=lambda w: {"setup_intent_id": w.setup_intent_id, "make_default": ""},
    ),
    # Stripe's redirect back (a GET): a page with a button that posts to method_finish.
    Row("payments:method_return", get=200, foreign=400, query=lambda w: {"setup_intent": w.setup_intent_id}),
    Row("payments:method_default", kwargs=lambda w: {"payment_method_id": w.spare_method_id}, get=None, post=302),
    Row(
        "payments:method_remove",
        kwargs=lambda w: {"payment_method_id": w.spare_method_id},
        post=302,
        data=lambda w: {"replacement": ""},
    ),
    Row(
        "payments:buy",
        kwargs=lambda w: {"line_id": w.line.pk},
        post=302,
        data=lambda w: {"package": str(w.package.pk), "payment_method": w.method_id},
    ),
    Row(
        "payments:pay_renewal",
        kwargs=lambda w: {"renewal_id": w.renewal.pk},
        post=302,
        data=lambda w: {"payment_method": w.method_id},
    ),
    Row("payments:authenticate", kwargs=lambda w: {"charge_id": w.action_charge.pk}),
    Row("payments:complete", kwargs=lambda w: {"charge_id": w.action_charge.pk}, get=None, post=302),
    Row("payments:receipt", kwargs=lambda w: {"charge_id": w.receipt_charge.pk}),
    Row("payments:history", objects=False, query=lambda w: {"line": w.line.pk}),
    Row("payments:history_csv", objects=False, query=lambda w: {"line": w.line.pk}),
    Row("renewals:rule", kwargs=lambda w: {"line_id": w.line.pk}, post=302, data=lambda w: _rule_form(w)),
    Row("renewals:turn_off", kwargs=lambda w: {"line_id": w.line.pk}, get=None, post=302),
    # After paying now with another card: the offer to make it the auto-renewal card (POST).
    Row("renewals:paid", kwargs=lambda w: {"renewal_id": w.paid_renewal.pk}, post=302),
    # Only the signed-in customer's own data: another customer's download must not hold a marker.
    Row("accounts:download_data", objects=False),
    # The POST needs a recent sign-in (allauth's reauthentication): a bare session is sent there.
    Row("accounts:close_account", objects=False, post=302, data=lambda w: {"confirm": "on"}),
    # The package is public (the catalogue's Buy button); the owner pays with their own card.
    Row(
        "provisioning:buy",
        kwargs=lambda w: {"package_id": w.package.pk},
        objects=False,
        post=302,
        data=lambda w: {"payment_method": w.method_id},
    ),
    Row("provisioning:charge_order", kwargs=lambda w: {"charge_id": w.order.charge_id}, get=302),
    Row("provisioning:order", kwargs=lambda w: {"order_id": w.order.pk}),
    Row("provisioning:order_status", kwargs=lambda w: {"order_id": w.order.pk}, json=True),
]
MATRIX_BY_NAME = {row.name: row for row in MATRIX}


def full_url(row: Row, w: World) -> str:
    from urllib.parse import urlencode

    query = row.query(w)
    return row.url(w) + ("?" + urlencode(query) if query else "")


# --- what "nothing changed" means -----------------------------------------------------------------

_VOLATILE = {"last_login"}
_SNAPSHOT_APPS = ("accounts", "payments", "renewals", "account", "mfa", "auth")
_SNAPSHOT_DJSTRIPE = ("Customer", "PaymentMethod", "PaymentIntent", "SetupIntent")


def snapshot() -> dict:
    """Every row of our apps, allauth's and the dj-stripe mirror's payment objects."""
    models = [m for label in _SNAPSHOT_APPS for m in apps.get_app_config(label).get_models()]
    models += [apps.get_model("djstripe", name) for name in _SNAPSHOT_DJSTRIPE]
    state = {}
    for model in models:
        fields = [f.attname for f in model._meta.concrete_fields if f.attname not in _VOLATILE]
        state[model._meta.label] = list(model.objects.order_by("pk").values_list(*fields))
    return state


def assert_unchanged(before: dict, context: str) -> None:
    after = snapshot()
    changed = [label for label in before if before[label] != after[label]]
    assert not changed, f"{context} changed {changed}"


# --- clients --------------------------------------------------------------------------------------


def client_for(user, *, enforce_csrf_checks: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    if user is not None:
        client.force_login(user)
    return client


def is_login_redirect(response, login_url: str | None = None) -> bool:
    login_url = login_url or reverse("account_login")
    return response.status_code == 302 and response["Location"].startswith(login_url + "?next=")


# --- forms in rendered HTML -----------------------------------------------------------------------


class _PostForms(HTMLParser):
    """Each <form method="post"> of a page, with whether it carries Django's CSRF token."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._open = {
                "action": attrs.get("action", ""),
                "post": (attrs.get("method") or "get").lower() == "post",
                "token": False,
            }
            self.forms.append(self._open)
        elif (
            tag == "input"
            and self._open is not None
            and attrs.get("name") == "csrfmiddlewaretoken"
            and attrs.get("value")
        ):
            self._open["token"] = True

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def post_forms_without_token(html: str) -> list[str]:
    parser = _PostForms()
    parser.feed(html)
    return [form["action"] or "(this page)" for form in parser.forms if form["post"] and not form["token"]]


def is_html(response) -> bool:
    return response.get("Content-Type", "").startswith("text/html") and bool(response.content)


def fill_route(route: str) -> str:
    """A concrete path for a route, object ids and keys set to 1 (refusals come before lookups)."""
    path = re.sub(r"\^|\$", "", route)
    path = re.sub(r"\(\?P<app_label>[^)]*\)", "accounts", path)
    path = re.sub(r"\(\?P<url>\.\*\)", "no-such-page/", path)
    path = re.sub(r"<(?:\w+:)?(action_name)>", "_sync_all_instances", path)
    path = re.sub(r"<(?:\w+:)?(model_name)>", "customer", path)
    path = re.sub(r"<uuid:\w+>", "00000000-0000-0000-0000-000000000000", path)
    path = re.sub(r"\(\?P<\w+>[^)]*\)", "1", path)  # allauth's regex routes
    path = re.sub(r"<(?:\w+:)?\w+>", "1", path)
    return "/" + path
