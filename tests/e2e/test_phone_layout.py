"""Every customer page fits a phone: at 390 px (and at 1280 px) in English and in Chinese, no page
scrolls sideways, no element reaches past the screen's right edge, and no text spills out of the
box that holds it (a card, a button, a badge, a banner, a table cell). docs/pages.md.

With E2E_SHOTS=<dir> each page is also saved as a full-page screenshot there, to look at."""

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from payments import gateways
from payments.models import Charge
from renewals.models import Renewal
from tests.builders import GB, MB, make_charge, make_line, make_package, make_renewal, make_rule, make_user
from tests.e2e.conftest import PASSWORD
from tests.payments.conftest import create_card

# Everything that reaches past the viewport's right edge, and the document's own width.
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const found = [];
  if (document.documentElement.scrollWidth > width) {
    found.push(`page is ${document.documentElement.scrollWidth}px wide in ${width}px`);
  }
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    if (box.right > width + 1) {
      found.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${el.className} right edge at ${Math.round(box.right)}px: ${(el.textContent || "").trim().slice(0, 40)}`);
    }
  }
  return found;
}"""

# Text wider than a box that hides its overflow, and content of a card, button, badge, banner or
# cell that lies outside that box (text drawn over its neighbour).
OVERLAP = """() => {
  const found = [];
  const name = (el) => `${el.tagName.toLowerCase()}.${el.className}: ${(el.textContent || "").trim().slice(0, 40)}`;
  for (const el of document.body.querySelectorAll("*")) {
    const style = getComputedStyle(el);
    if (!["hidden", "clip"].includes(style.overflowX) || el.classList.contains("visually-hidden")) continue;
    if (el.scrollWidth > el.clientWidth + 1 && (el.textContent || "").trim()) found.push(`clipped text in ${name(el)}`);
  }
  const boxes = ".card, button, .button, .badge, .banner, td, th, dd, dt, h1, h2, label, .message, legend";
  for (const el of document.body.querySelectorAll(boxes)) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || el.closest(".visually-hidden")) continue;
    const range = document.createRange();
    range.selectNodeContents(el);
    const inner = range.getBoundingClientRect();
    if (inner.width === 0) continue;
    if (inner.right > box.right + 1 || inner.left < box.left - 1) found.push(`content outside ${name(el)}`);
    for (const child of el.children) {
      const c = child.getBoundingClientRect();
      if (c.width === 0 || c.height === 0 || getComputedStyle(child).position === "absolute") continue;
      if (c.right > box.right + 1 || c.left < box.left - 1) found.push(`${child.tagName.toLowerCase()} outside ${name(el)}`);
    }
  }
  return found;
}"""

LANGUAGES = {"en": "en-US", "zh-hans": "zh-CN"}


@pytest.fixture(params=[("en", 390), ("zh-hans", 390), ("en", 1280), ("zh-hans", 1280)], ids=lambda p: f"{p[0]}-{p[1]}")
def screen(request):
    return request.param


@pytest.fixture
def browser_context_options(screen):
    language, width = screen
    return {"locale": LANGUAGES[language], "viewport": {"width": width, "height": 844}}


@pytest.fixture
def journey(transactional_db, screen):
    """A customer with every page filled: two lines (one renewing, one whose renewal failed), a
    saved card, a paid purchase and a failed renewal payment, in the language under test."""
    language, _ = screen
    user = make_user(
        email="layout.customer@example.com", password=PASSWORD, language=language, time_zone="Asia/Shanghai"
    )
    package = make_package(name="10 GB / 30 days", data_allowance_bytes=10 * GB, price_minor=9800)
    line = make_line(
        owner=user, package=package, label="Travel phone", data_remaining_bytes=3 * GB, data_used_bytes=7 * GB
    )
    make_rule(line=line, package=package)
    failing = make_line(
        owner=user, package=package, label="Tablet", data_remaining_bytes=120 * MB, data_used_bytes=int(9.9 * GB)
    )
    rule = make_rule(line=failing, package=package)
    renewal = make_renewal(
        line=failing,
        package=package,
        rule=rule,
        status=Renewal.Status.RETRY_SCHEDULED,
        next_attempt_at=timezone.now() + timedelta(hours=6),
        last_failure_code="card_declined",
        last_failure_message="Your card was declined.",
    )
    customer = gateways.ensure_customer(user)
    method = gateways.attach_payment_method(customer_id=customer.id, payment_method_id=create_card())
    gateways.set_default_payment_method(customer_id=customer.id, payment_method_id=method.id)
    paid = make_charge(user=user, line=line, package=package, status=Charge.Status.SUCCEEDED, settled_at=timezone.now())
    make_charge(user=user, line=failing, package=package, renewal=renewal, attempt=1, status=Charge.Status.FAILED)
    # A renewal paid by hand with another card than the rule's: the "use this card" offer.
    settled = make_renewal(line=line, package=package, status=Renewal.Status.SUCCEEDED)
    make_charge(
        user=user,
        line=line,
        package=package,
        renewal=settled,
        attempt=1,
        status=Charge.Status.SUCCEEDED,
        settled_at=timezone.now(),
        payment_method_id="pm_other",
        payment_method_summary="Mastercard •••• 4444",
    )
    return {"user": user, "line": line, "failing": failing, "renewal": renewal, "paid": paid, "settled": settled}


def check(page, screen, name: str) -> list[str]:
    page.wait_for_load_state("load")
    problems = [f"{name}: {problem}" for problem in page.evaluate(OVERFLOW) + page.evaluate(OVERLAP)]
    shots = os.environ.get("E2E_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{shots}/{screen[0]}-{screen[1]}-{name}.png", full_page=True)
    return problems


def test_every_customer_page_fits_the_screen_without_overflow_or_spilled_text(page, log_in, journey, screen):
    problems = []
    for name, path in (
        ("login", "/accounts/login/"),
        ("signup", "/accounts/signup/"),
        ("password-reset", "/accounts/password/reset/"),
    ):
        page.goto(path)
        problems += check(page, screen, name)

    log_in(journey["user"])
    line, failing, renewal, paid = journey["line"], journey["failing"], journey["renewal"], journey["paid"]
    pages = [
        ("account", "/"),
        ("line", f"/lines/{line.pk}/"),
        ("line-failing", f"/lines/{failing.pk}/"),
        ("rule", f"/renewals/lines/{line.pk}/"),
        ("buy", f"/payments/lines/{line.pk}/buy/"),
        ("pay", f"/payments/renewals/{renewal.pk}/pay/"),
        ("methods", "/payments/methods/"),
        ("history", "/payments/history/"),
        ("receipt", f"/payments/charges/{paid.pk}/receipt/"),
        ("paid", f"/renewals/{journey['settled'].pk}/paid/"),
        ("settings", "/settings/"),
        ("password-change", "/accounts/password/change/"),
        ("email", "/accounts/email/"),
    ]
    for name, path in pages:
        response = page.goto(path)
        assert response is not None and response.status == 200, f"{name}: {path}"
        problems += check(page, screen, name)

    page.goto(f"/renewals/lines/{line.pk}/")
    page.locator("button[name=review]").click()
    page.wait_for_selector(".rule-summary")
    problems += check(page, screen, "confirm")

    # The icons and the manifest every page links are served.
    page.goto("/")
    for href in page.eval_on_selector_all(
        "link[rel=icon], link[rel=apple-touch-icon], link[rel=manifest]", "els => els.map(e => e.href)"
    ):
        assert page.request.get(href).status == 200, href
    assert re.search(r"\S", page.title())
    assert problems == [], "\n".join(problems)
    assert page.js_errors == []
