"""The operator reaches the admin in a real browser only through the TOTP code step."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_operator_logs_in_with_a_code_and_opens_the_admin(page, live_server, operator, log_in_operator):
    page.goto("/admin/")
    assert page.url.startswith(live_server.url + "/accounts/login/")
    log_in_operator(operator)
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="Operations", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Axis eSIM operations")).to_be_visible()
    expect(page.get_by_role("link", name="Lines", exact=True)).to_be_visible()
