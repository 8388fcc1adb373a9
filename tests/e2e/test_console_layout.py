"""The operator's lists fit: at 1280 px the charges list shows its amount and status columns
without scrolling; at 390 px every list page renders (Django's admin scrolls the table itself).
With SHOTS_DIR set, each page is also saved as a screenshot in both languages."""

import os
from pathlib import Path

import pytest

from accounts.models import Line
from renewals.models import Alert, Renewal
from tests.builders import MB, make_charge, make_line, make_package, make_renewal, make_user

pytestmark = pytest.mark.e2e

LISTS = [
    "/admin/",
    "/admin/payments/charge/",
    "/admin/renewals/renewal/",
    "/admin/accounts/line/",
    "/admin/accounts/notice/",
    "/admin/operations/",
]


def _seed():
    customer = make_user(email="wang.fang.long.name@example.com", name="王芳")
    package = make_package(name="Asia 10 GB / 30 days", data_allowance_bytes=512 * MB)
    line = make_line(owner=customer, package=package, status=Line.Status.SUSPENDED)
    renewal = make_renewal(line=line, package=package, status=Renewal.Status.RETRY_SCHEDULED, failures=2)
    for status in ("succeeded", "failed", "refunded"):
        make_charge(
            user=customer,
            line=line,
            package=package,
            renewal=renewal if status == "failed" else None,
            status=status,
            decline_kind="soft" if status == "failed" else "",
            failure_code="insufficient_funds" if status == "failed" else "",
            refunded_minor=9800 if status == "refunded" else 0,
            payment_intent_id=f"pi_3Qw{status}Example0123456789",
        )
    Alert.objects.create(kind=Alert.Kind.REPEATED_FAILURES, line=line, renewal=renewal, message="declined twice")


@pytest.mark.parametrize("width", [1280, 390])
def test_operator_lists_fit_and_charges_show_amount_and_status(page, operator, log_in_operator, width):
    _seed()
    page.set_viewport_size({"width": width, "height": 900})
    log_in_operator(operator)
    shots = os.environ.get("SHOTS_DIR")
    for language in ("en", "zh-hans"):
        operator.language = language
        operator.save(update_fields=["language"])
        for url in LISTS:
            response = page.goto(url)
            assert response is not None and response.status == 200, url
            if url == "/admin/payments/charge/" and width == 1280:
                # Within the list's own box, which clips what does not fit behind a scroll bar.
                results = page.locator("#changelist .results").first.bounding_box()
                assert results is not None
                for column in ("column-amount_minor_readable", "column-status"):
                    box = page.locator(f"th.{column}").first.bounding_box()
                    assert box is not None and box["x"] + box["width"] <= results["x"] + results["width"] + 1, (
                        language,
                        column,
                        box,
                        results,
                    )
            if shots:
                name = url.strip("/").replace("/", "_") or "home"
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=f"{shots}/{name}-{width}-{language}.png", full_page=True)
