"""A newcomer gets an eSIM, in Chromium against the live server, localstripe and the SM-DP+
stand-in: a plan is bought with a 3-D Secure card, "Preparing your eSIM" turns into the QR code
without a reload (the test plays the worker), the stand-in plays the phone downloading and
installing it, and the line page says "Installed" — in English and in Chinese.

With ESIM_SHOTS_DIR set, the pages are also saved as screenshots at 390 and 1280 px."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from provisioning import services
from provisioning.models import ProfileOrder
from tests.builders import make_package
from tests.provisioning.conftest import smdp  # noqa: F401  (fixture)

from .test_payments_browser import type_card

SHOTS = os.environ.get("ESIM_SHOTS_DIR", "")
TEXT = {
    "en": {"preparing": "Preparing your eSIM", "ready": "Your eSIM is ready", "installed": "Installed"},
    "zh-hans": {"preparing": "正在准备您的 eSIM", "ready": "您的 eSIM 已准备好", "installed": "已安装"},
}


def shot(page, name: str, language: str) -> None:
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=f"{SHOTS}/{name}-{language}-{width}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_newcomer_buys_an_esim_and_sees_it_installed(
    page,
    log_in,
    verified_customer,
    live_server,
    smdp,
    language,  # noqa: F811
):
    words = TEXT[language]
    verified_customer.language = language
    verified_customer.save()
    package = make_package(name="Travel 10 GB", data_allowance_bytes=10 * 1024**3, price_minor=9900)
    log_in(verified_customer)

    page.goto(f"/esim/buy/{package.pk}/")
    shot(page, "buy-no-method", language)
    page.locator("a[href^='/payments/methods/?next=']").first.click()
    type_card(page, "4000002500003155")
    page.click("#add-method-submit")
    page.get_by_role("button", name="Complete authentication").click()  # the bank's check of the new card
    page.wait_for_url(re.compile(rf"/esim/buy/{package.pk}/$"))
    shot(page, "buy", language)
    page.locator("form.card button[type=submit]").click()
    page.wait_for_url(re.compile(r"/authenticate/$"))
    page.get_by_role("button", name="Complete authentication").click()  # 3-D Secure for the payment

    page.wait_for_url(re.compile(r"/esim/orders/\d+/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(words["preparing"])
    shot(page, "preparing", language)
    order = ProfileOrder.objects.get(user=verified_customer)
    page.evaluate("window.__samePage = true")

    services.advance_order(order_id=order.pk)  # the worker's part

    expect(page.get_by_role("heading", level=1)).to_have_text(words["ready"])
    expect(page.locator("#install-qr svg")).to_be_visible()
    order.refresh_from_db()
    expect(page.locator("#lpa-code")).to_have_value(order.activation_code)
    assert "carddata=LPA%3A1%24" in page.locator("#ios-install").get_attribute("href")
    assert page.evaluate("window.__samePage") is True  # no reload
    shot(page, "ready", language)

    callback = live_server.url + "/esim/es2plus/handleDownloadProgressInfo"
    assert smdp.device(order.iccid, "download", callbackUrl=callback)["callbackStatus"] == 204
    assert smdp.device(order.iccid, "install", callbackUrl=callback)["callbackStatus"] == 204

    page.goto(f"/lines/{order.line_id}/")
    expect(page.locator("#install-badge")).to_have_text(words["installed"])
    shot(page, "line-installed", language)
    assert page.js_errors == []
