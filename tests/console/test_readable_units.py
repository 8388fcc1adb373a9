"""The console shows amounts as an operator reads them (docs/console.md, "Units and time zones"):
data in MB/GB, money as "CNY 98.00", every time with its zone, JSON facts as lines."""

import re
from datetime import UTC, datetime

import pytest

from accounts.models import ChangeRecord, Notice
from tests.builders import GB, MB, make_charge, make_line, make_package, make_renewal, make_user


def _text(page) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.content.decode())).replace(" : ", ": ")


@pytest.fixture
def ledger(db):
    customer = make_user(email="shanghai@example.com", time_zone="Asia/Shanghai")
    package = make_package(name="Tourist 512", data_allowance_bytes=512 * MB, price_minor=9800)
    line = make_line(owner=customer, package=package, data_remaining_bytes=512 * MB, data_used_bytes=3 * GB // 2)
    line.expires_at = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
    line.save(update_fields=["expires_at"])
    charge = make_charge(user=customer, line=line, package=package, status="succeeded")
    renewal = make_renewal(line=line, package=package)
    return line, charge, renewal, package


def test_lists_show_data_and_money_formatted_and_times_with_their_zone(superuser_client, ledger):
    client, _operator = superuser_client
    line, charge, renewal, package = ledger
    lines = _text(client.get("/admin/accounts/line/"))
    assert "512 MB" in lines and str(512 * MB) not in lines
    assert "2026-11-29 18:00 UTC" in lines
    charges = _text(client.get("/admin/payments/charge/"))
    assert "CNY 98.00" in charges and " 9800 " not in charges
    renewals = _text(client.get("/admin/renewals/renewal/"))
    assert "CNY 98.00" in renewals
    packages = _text(client.get("/admin/accounts/package/"))
    assert "CNY 98.00" in packages and "512 MB" in packages


def test_detail_pages_show_units_and_the_operators_own_zone(superuser_client, ledger):
    client, operator = superuser_client
    line, charge, renewal, _package = ledger
    operator.time_zone = "Asia/Shanghai"
    operator.save(update_fields=["time_zone"])
    page = _text(client.get(f"/admin/accounts/line/{line.pk}/change/"))
    assert "1.50 GB" in page and "512 MB" in page
    assert "2026-11-30 02:00 UTC+8" in page
    charge_page = _text(client.get(f"/admin/payments/charge/{charge.pk}/change/"))
    assert "CNY 98.00" in charge_page and "CNY 0.00" in charge_page  # amount and refunded
    assert "(minor units)" not in charge_page


def test_notice_facts_and_history_are_shown_as_lines_not_json(superuser_client, ledger):
    client, _operator = superuser_client
    line, *_ = ledger
    notice = Notice.objects.create(
        user=line.owner,
        line=line,
        kind="usage_75",
        facts={"remaining_bytes": 128 * MB, "used_percent": 75},
        dedup_key="usage-75-test",
    )
    page = _text(client.get(f"/admin/accounts/notice/{notice.pk}/change/"))
    assert "remaining_bytes: 128 MB" in page and "used_percent: 75" in page
    assert "{" not in page.split("remaining_bytes")[0][-40:]
    history = ChangeRecord.objects.filter(object_id=str(line.pk)).first()
    assert history is not None
    page = _text(client.get(f"/admin/accounts/line/{line.pk}/change/"))
    assert "status: active" in page and '"status": "active"' not in page


def test_the_package_form_takes_megabytes_and_a_price_in_the_currencys_units(superuser_client, ledger):
    from tests.console.conftest import form_values

    client, _operator = superuser_client
    *_, package = ledger
    url = f"/admin/accounts/package/{package.pk}/change/"
    page = client.get(url)
    assert form_values(page)["data_allowance_mb"] == "512" and form_values(page)["price"] == "98.00"
    refused = client.post(url, form_values(page) | {"price": "98.001"})
    assert refused.status_code == 200 and "CNY has 2 decimal places." in refused.content.decode()
    assert client.post(url, form_values(page) | {"data_allowance_mb": "1024", "price": "45.5"}).status_code == 302
    package.refresh_from_db()
    assert (package.data_allowance_bytes, package.price_minor) == (GB, 4550)
