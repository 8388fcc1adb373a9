"""The catalogue in a real browser: the device check answers as the customer types (the script),
and submitting the form gives the same answer (the server), in English and in Chinese."""

import pytest
from playwright.sync_api import expect

from tests.builders import make_package

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("language", "answer"),
    [("en-US", "Yes: Galaxy S21 Ultra supports eSIM."), ("zh-CN", "是的：Galaxy S21 Ultra 支持 eSIM。")],
)
def test_the_device_check_answers_while_typing_and_on_submit(browser, live_server, transactional_db, language, answer):
    make_package(name="Asia 5 GB", price_minor=1800, currency="USD", listed=True, coverage_countries="CN, JP")
    context = browser.new_context(base_url=live_server.url, locale=language)
    if language == "zh-CN":
        context.add_cookies([{"name": "django_language", "value": "zh-hans", "url": live_server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto("/plans/")
        expect(page.locator("#plans-heading")).to_be_visible()
        page.locator("#device").press_sequentially("galaxy s21 ultra")
        expect(page.locator("#device-result")).to_contain_text(answer)  # no submit: the script answered
        assert page.url.endswith("/plans/")
        page.locator("#device-check button[type=submit]").click()
        page.wait_for_url("**/plans/?device=*")
        expect(page.locator("#device-result")).to_contain_text(answer)  # the server's answer
        page.locator("#device").fill("")
        page.locator("#device").press_sequentially("nokia 3310")
        expect(page.locator("#device-result")).not_to_contain_text(answer)
        assert errors == []
    finally:
        context.close()
