"""Content-Security-Policy on every kind of page, and no inline script for it to forbid: the
customer's portal, allauth's pages, the operator's admin and the error pages, reached by following
every link a signed-in customer and a superuser see."""

import base64
import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from accounts.middleware import content_security_policy
from payments import gateways
from payments.models import Charge
from renewals.models import Renewal
from tests.builders import make_charge, make_line, make_rule
from tests.console.conftest import admin_client_for
from tests.payments.conftest import create_card

# Data blocks are not executed, so they need no script-src.
DATA_SCRIPT_TYPES = {"application/json", "application/ld+json"}
# The one style attribute the policy's hash allows (allauth's phone-change page).
ALLOWED_STYLE_ATTRIBUTES = {"display: none"}
# Leaving the crawl: logging out ends the session; CSV is no HTML; language switch and i18n are
# POSTs. Delete pages are only confirmations on GET, so they are crawled too.
SKIP = re.compile(r"^/(accounts/logout/|payments/history\.csv|i18n/|static/|stripe/)")


class InlineCodeFinder(HTMLParser):
    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name, value in attrs.items():
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name == "style" and (value or "").strip().rstrip(";") not in ALLOWED_STYLE_ATTRIBUTES:
                self.problems.append(f"<{tag} style={value!r}>")
            if name in ("href", "src", "action") and (value or "").lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag == "script" and not attrs.get("src") and (attrs.get("type") or "").lower() not in DATA_SCRIPT_TYPES:
            self.problems.append(f"inline <script {attrs}>")
        if tag == "style":
            self.problems.append("inline <style>")
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def check_page(response, path: str) -> list[str]:
    """The problems of one response, and its links."""
    assert response.get("Content-Security-Policy") == content_security_policy(), f"{path}: no or another CSP"
    if "text/html" not in response.get("Content-Type", ""):
        return []
    finder = InlineCodeFinder()
    finder.feed(response.content.decode())
    assert not finder.problems, f"{path}: {finder.problems}"
    return finder.links


def crawl(client: Client, start: list[str], *, limit: int = 300) -> set[str]:
    """Follows same-site links breadth first. Pages of one shape (the same path but for ids) come
    from one template: two of each are enough."""
    seen: set[str] = set()
    shapes: dict[str, int] = {}
    queue = list(start)
    while queue and len(seen) < limit:
        path = queue.pop(0)
        shape = re.sub(r"\d+", "N", path)
        if path in seen or (shapes.get(shape, 0) >= 2 and path not in start):
            continue
        seen.add(path)
        shapes[shape] = shapes.get(shape, 0) + 1
        response = client.get(path)
        assert response.status_code < 500, f"{path}: {response.status_code}"
        if response.status_code in (301, 302):
            queue.append(urljoin(path, response["Location"]))
            continue
        for href in check_page(response, path):
            url = urlsplit(urljoin(path, href))
            if url.netloc or not url.path.startswith("/") or SKIP.search(url.path):
                continue
            # Admin filters and sort orders multiply one page; keep the path and at most one query.
            target = url.path if url.path.startswith("/admin/") or not url.query else f"{url.path}?{url.query}"
            if target not in seen:
                queue.append(target)
    return seen


@pytest.fixture
def portal_data(customer, package):
    """One of everything a customer's pages show: lines, a rule, a card, a receipt, a renewal
    to pay (the banner and the pay page)."""
    line = make_line(owner=customer, package=package, label="Phone")
    other = make_line(owner=customer, package=package, label="Tablet")
    make_rule(line=line, package=package)
    stripe_customer = gateways.ensure_customer(customer)
    pm = gateways.attach_payment_method(customer_id=stripe_customer.id, payment_method_id=create_card())
    gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=pm.id)
    make_charge(user=customer, line=line, package=package, status=Charge.Status.SUCCEEDED, payment_intent_id="pi_paid")
    renewal = Renewal.objects.create(
        line=other,
        package=package,
        amount_minor=package.price_minor,
        currency=package.currency,
        status=Renewal.Status.FAILED,
        failures=3,
    )
    return {"line": line, "renewal": renewal, "pm": pm}


def test_every_customer_page_sends_the_policy_and_has_no_inline_code(client, customer, portal_data):
    client.force_login(customer)
    line, renewal = portal_data["line"], portal_data["renewal"]
    pages = crawl(
        client,
        [
            "/",
            f"/payments/lines/{line.pk}/buy/",
            f"/payments/renewals/{renewal.pk}/pay/",
            f"/renewals/lines/{line.pk}/",
            f"/payments/methods/{portal_data['pm'].id}/remove/",
            reverse("account_change_password"),
            reverse("account_change_phone"),
            reverse("mfa_index"),
        ],
    )
    for must in (
        "/",
        f"/lines/{line.pk}/",
        "/payments/methods/",
        "/payments/history/",
        "/settings/",
        f"/payments/renewals/{renewal.pk}/pay/",
        f"/renewals/lines/{line.pk}/",
    ):
        assert must in pages
    assert any(p.startswith("/payments/charges/") and p.endswith("/receipt/") for p in pages), pages
    # The rule's confirmation page is the answer to a POST.
    confirm = client.post(
        f"/renewals/lines/{line.pk}/",
        {
            "enabled": "on",
            "package": line.package_id,
            "trigger_data_below_mb": "300",
            "overage_policy": "block",
            "max_renewals_per_day": "2",
        },
    )
    assert confirm.status_code in (200, 302, 400)
    check_page(confirm, "rule confirmation")


def test_anonymous_and_error_pages_send_the_policy(db, package):
    # Not pure: the public catalogue (/plans/, linked from every anonymous page) reads the plans.
    client = Client()
    pages = crawl(client, ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/", "/admin/login/"])
    assert "/plans/" in pages
    check_page(client.get("/no-such-page/"), "404")
    check_page(Client(enforce_csrf_checks=True).post("/accounts/login/", {"login": "a@example.com"}), "CSRF 403")
    assert client.get("/no-such-page/").status_code == 404


def test_429_page_sends_the_policy(db, settings):
    settings.ACCOUNT_RATE_LIMITS = {"login": "1/m/ip"}
    client = Client()
    client.post("/accounts/login/", {"login": "a@example.com", "password": "x"})
    response = client.post("/accounts/login/", {"login": "a@example.com", "password": "x"})
    assert response.status_code == 429
    check_page(response, "429")


def test_every_admin_page_sends_the_policy_and_has_no_inline_code(db, customer, portal_data):
    client, _ = admin_client_for("superuser")
    pages = crawl(client, ["/admin/"], limit=600)
    assert any(p.endswith("/change/") for p in pages) and any(p.endswith("/add/") for p in pages), pages
    assert f"/admin/accounts/line/{portal_data['line'].pk}/change/" in pages


@pytest.mark.pure
def test_policy_forbids_inline_script_and_names_the_stripe_origins(settings):
    policy = dict(d.split(" ", 1) for d in content_security_policy().split("; "))
    localstripe = "{0.scheme}://{0.netloc}".format(urlsplit(settings.STRIPE_JS_URL))
    assert policy["script-src"] == f"'self' {localstripe}"
    assert policy["connect-src"] == f"'self' {localstripe}"  # the stand-in posts to localstripe's API
    # The only inline style allowed is the hash of "display: none" (allauth's phone-change page).
    digest = base64.b64encode(hashlib.sha256(b"display: none").digest()).decode()
    assert policy["style-src"] == f"'self' 'unsafe-hashes' 'sha256-{digest}'"
    assert "'unsafe-inline'" not in content_security_policy() and "'unsafe-eval'" not in content_security_policy()
    assert (
        policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'" and policy["form-action"] == "'self'"
    )
    settings.STRIPE_JS_URL = "https://js.stripe.com/v3/"
    settings.STRIPE_API_BASE = "https://api.stripe.com"
    settings.CSP_EXTRA_FRAME_SRC = ["https://hooks.stripe.com"]
    policy = dict(d.split(" ", 1) for d in content_security_policy().split("; "))
    assert policy["script-src"] == "'self' https://js.stripe.com"
    assert policy["frame-src"] == "https://js.stripe.com https://hooks.stripe.com"
    assert policy["connect-src"] == "'self' https://api.stripe.com"
