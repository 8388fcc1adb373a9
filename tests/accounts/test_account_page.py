"""The account page (portal home) and the line install page."""

import re
from datetime import UTC, datetime, time, timedelta
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Line, UsageRecord
from partner.services.usage import UsageInput, ingest_usage
from tests.builders import GB, MB, make_line, make_package, make_user


def usage(line, *, at: datetime, amount: int, ref: str) -> UsageRecord:
    """A partner record, through the ingestion (which keeps the roll-up the chart reads)."""
    ingest_usage(records=[UsageInput(0, ref, line.iccid, amount, at, at + timedelta(minutes=5))], now=datetime.now(UTC))
    return UsageRecord.objects.get(partner_record_id=ref)


def test_line_card_shows_status_data_validity_package_and_progress(customer_client, customer):
    package = make_package(name="Standard 10 GB")
    make_line(
        owner=customer,
        label="Phone",
        package=package,
        status=Line.Status.DATA_EXHAUSTED,
        data_remaining_bytes=1536 * MB,
        data_used_bytes=8704 * MB,
    )
    body = customer_client.get(reverse("accounts:home")).content.decode()
    assert "Phone" in body and 'class="badge data_exhausted">Out of data<' in body
    assert "1.50 GB" in body and "8.50 GB" in body
    assert "Standard 10 GB" in body
    progress = re.search(r"<progress [^>]*>", body).group(0)
    assert 'max="100"' in progress and 'value="15"' in progress  # 1.5 GB of 10 GB: the notices' figure
    assert "15% of this package's data is left" in body


def test_small_amounts_are_megabytes_with_grouping(customer_client, customer):
    make_line(owner=customer, data_remaining_bytes=300 * MB, data_used_bytes=1000 * MB - 1)
    body = customer_client.get(reverse("accounts:home")).content.decode()
    assert "300 MB" in body and "1,000 MB" in body


def test_usage_chart_groups_records_by_day_in_the_users_zone(client, db):
    user = make_user(time_zone="Asia/Shanghai")
    line = make_line(owner=user)
    base = (datetime.now(UTC) - timedelta(days=3)).date()
    at = lambda day, hour: datetime.combine(base + timedelta(days=day), time(hour), tzinfo=UTC)  # noqa: E731
    # 23:00 UTC is 07:00 the next day in Shanghai: the first two records are one Shanghai day.
    usage(line, at=at(0, 23), amount=100 * MB, ref="a")
    usage(line, at=at(1, 3), amount=50 * MB, ref="b")
    usage(line, at=at(2, 1), amount=10 * MB, ref="c")
    # 33 days ago: past the chart's 30 days, still inside the 35-day dedup window ingestion accepts.
    usage(line, at=at(-30, 12), amount=GB, ref="too-old")
    client.force_login(user)
    body = client.get(reverse("accounts:home")).content.decode()
    chart = re.search(r"<svg [^>]*role=\"img\".*?</svg>", body, re.S).group(0)
    bars = re.findall(r"<rect [^>]*><title>([^<]*)</title>", chart)
    # Babel's en_US short date: month/day/two-digit year, no leading zeros.
    day1, day2 = (f"{d.month}/{d.day}/{d.year % 100:02d}" for d in (base + timedelta(days=1), base + timedelta(days=2)))
    assert bars == [f"{day1}: 150 MB", f"{day2}: 10 MB"]
    assert "total 160 MB" in body
    # the peak day's bar is full height
    assert re.search(rf'<rect x="[\d.]+" y="0.0" width="[\d.]+" height="100.0"><title>{day1}', chart)


def test_account_page_query_count_does_not_grow_with_lines(client, db):
    user = make_user()
    package = make_package()
    now = datetime.now(UTC)

    def add_line(n):
        line = make_line(owner=user, package=package)
        for day in range(3):
            usage(line, at=now - timedelta(days=day), amount=MB, ref=f"{n}-{day}")

    add_line(0)
    client.force_login(user)
    client.get(reverse("accounts:home"))  # warm the session
    with CaptureQueriesContext(connection) as one_line:
        assert client.get(reverse("accounts:home")).status_code == 200
    for n in range(1, 6):
        add_line(n)
    with CaptureQueriesContext(connection) as six_lines:
        body = client.get(reverse("accounts:home")).content.decode()
    assert body.count('<figure class="usage-chart">') == 6
    assert len(six_lines) == len(one_line)


# The account page, whatever the number of lines: the session, the user, the lines with their
# packages, the usage chart's daily sums (one GROUP BY for every line), and each line's state (the
# lines the view read, newest renewals, purchases waiting for the bank, enabled rules; the cards only
# when a rule is on).
ACCOUNT_PAGE_QUERIES = 7


@pytest.mark.parametrize("lines", [1, 8])
def test_account_page_costs_the_same_exact_queries_for_one_line_or_eight(client, db, lines, django_assert_num_queries):
    user = make_user()
    now = datetime.now(UTC)
    for n in range(lines):
        line = make_line(owner=user, package=make_package())
        usage(line, at=now - timedelta(days=1), amount=MB, ref=f"{n}")
    client.force_login(user)
    client.get(reverse("accounts:home"))  # warm the session
    with django_assert_num_queries(ACCOUNT_PAGE_QUERIES):
        body = client.get(reverse("accounts:home")).content.decode()
    assert body.count('<figure class="usage-chart">') == lines


def test_line_detail_has_qr_copyable_code_and_ios_link(customer_client, customer):
    line = make_line(owner=customer, smdp_address="rsp.example.net", matching_id="AB-12$CD")
    body = customer_client.get(reverse("accounts:line_detail", args=[line.pk])).content.decode()
    lpa = "LPA:1$rsp.example.net$AB-12$CD"
    assert f'value="{lpa}"' in body
    assert re.search(
        r'<svg role="img" viewBox="[^"]+" class="segno"><title>QR code of the activation code</title>', body
    )
    assert 'data-copy-target="lpa-code"' in body
    assert '<script src="/static/js/copy.js" defer></script>' in body
    assert "<script>" not in body  # no inline script: a CSP can forbid them
    expected = "https://esimsetup.apple.com/esim_qrcode_provisioning?carddata=" + quote(lpa, safe="")
    assert f'href="{expected}"' in body
    assert "LPA%3A1%24rsp.example.net%24AB-12%24CD" in expected


def test_qr_code_encodes_the_activation_code(customer_client, customer):
    import segno

    line = make_line(owner=customer)
    body = customer_client.get(reverse("accounts:line_detail", args=[line.pk])).content.decode()
    expected_path = re.search(
        r'class="qrline" stroke="#000" d="([^"]+)"', segno.make(line.lpa_string, error="m").svg_inline()
    ).group(1)
    assert expected_path in body


def test_another_customers_line_detail_is_404(client, customer, other_customer):
    line = make_line(owner=other_customer)
    client.force_login(customer)
    assert client.get(reverse("accounts:line_detail", args=[line.pk])).status_code == 404
    assert client.get(reverse("accounts:line_detail", args=[999999])).status_code == 404
    assert client.get("/lines/99999999999999999999999/").status_code == 404  # beyond bigint: still no 500


def test_account_page_in_chinese(client, customer):
    customer.language = "zh-hans"
    customer.save()
    make_line(owner=customer, status=Line.Status.ACTIVE)
    client.force_login(customer)
    body = client.get(reverse("accounts:home")).content.decode()
    for text in ("我的 eSIM", "本套餐剩余", "本套餐已用", "有效期至", "使用中", "过去 30 天每日流量"):
        assert text in body, text
    line = customer.lines.get()
    detail = client.get(reverse("accounts:line_detail", args=[line.pk])).content.decode()
    assert "安装此 eSIM" in detail and "复制" in detail


def test_portal_links_to_payments_and_renewals(customer_client, customer):
    line = make_line(owner=customer)
    body = customer_client.get(reverse("accounts:home")).content.decode()
    for href in (
        reverse("payments:methods"),
        reverse("payments:history"),
        reverse("payments:buy", args=[line.pk]),
        reverse("renewals:rule", args=[line.pk]),
    ):
        assert f'href="{href}"' in body


def test_a_terminated_line_says_it_has_ended_and_offers_no_purchase_renewal_or_install(customer_client, customer):
    ended = make_line(owner=customer, label="Old phone", status=Line.Status.TERMINATED, data_remaining_bytes=300 * MB)
    for page in (reverse("accounts:home"), reverse("accounts:line_detail", args=[ended.pk])):
        body = customer_client.get(page).content.decode()
        assert "This eSIM has ended" in body, page
        assert (
            reverse("payments:buy", args=[ended.pk]) not in body
            and reverse("renewals:rule", args=[ended.pk]) not in body
        )
        assert "data is left" not in body and "esimsetup.apple.com" not in body
