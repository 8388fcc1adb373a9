"""The public catalogue (/plans/): listed packages only, prices and coverage in the reader's
language, the device check with and without a script, and the account page's way into it."""

import json
import re

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from accounts.catalogue import DEVICES_FILE, find_devices
from accounts.models import Package
from accounts.prices import format_price
from tests.builders import GB, MB, make_line, make_package

PLANS = "/plans/"


def in_chinese(client):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    return client


@pytest.fixture
def asia(db):
    return make_package(
        name="Asia 5 GB",
        data_allowance_bytes=5 * GB,
        validity_days=15,
        price_minor=1800,
        currency="USD",
        listed=True,
        coverage_countries="CN, HK, JP",
        coverage_region="Asia",
    )


def test_the_plans_page_is_public_and_its_url_is_accounts_plans(client, asia):
    assert reverse("accounts:plans") == PLANS
    response = client.get(PLANS)
    assert response.status_code == 200
    assert "Asia 5 GB" in response.content.decode()


def test_only_listed_packages_on_sale_are_shown(client, asia):
    make_package(name="Top-up only", listed=False)
    make_package(name="Withdrawn", listed=True, active=False)
    page = client.get(PLANS).content.decode()
    assert "Asia 5 GB" in page and "Top-up only" not in page and "Withdrawn" not in page


def test_a_plan_shows_data_validity_price_coverage_and_the_buy_link_in_english(client, asia):
    page = client.get(PLANS).content.decode()
    card = re.search(rf'<li class="card plan" id="plan-{asia.pk}">(.*?)</li>', page, re.S).group(1)
    assert "5 GB" in card and "15 days" in card
    assert '<p class="price">$18.00</p>' in card
    assert "<strong>Asia</strong>" in card and "China, Hong Kong SAR China, and Japan" in card
    assert f'href="/esim/buy/{asia.pk}/"' in card and asia.buy_url == f"/esim/buy/{asia.pk}/"


def test_a_plan_reads_in_chinese_with_the_chinese_currency_format(client, asia):
    make_package(
        name="China 1 GB", data_allowance_bytes=GB, validity_days=1, price_minor=1800, currency="CNY", listed=True
    )
    page = in_chinese(client).get(PLANS).content.decode()
    assert '<p class="price">US$18.00</p>' in page and '<p class="price">¥18.00</p>' in page
    assert "15天" in page or "15 天" in page
    assert "中国、中国香港特别行政区和日本" in page
    assert "我的手机支持 eSIM 吗？" in page


@pytest.mark.pure
def test_prices_follow_the_currency_exponent_and_the_language():
    assert format_price(1800, "USD", "en") == "$18.00"
    assert format_price(1800, "CNY", "en") == "CN¥18.00"
    assert format_price(1800, "CNY", "zh-hans") == "¥18.00"
    assert format_price(1200, "JPY", "en") == "¥1,200"
    assert format_price(123456, "EUR", "zh-hans") == "€1,234.56"


def test_validity_of_one_day_is_singular(client, db):
    make_package(name="Day pass", data_allowance_bytes=500 * MB, validity_days=1, listed=True)
    page = client.get(PLANS).content.decode()
    assert "1 day<" in page and "500 MB" in page


def test_coverage_codes_are_checked_and_tidied(db):
    package = Package(
        name="x", data_allowance_bytes=GB, validity_days=1, price_minor=1, currency="USD", coverage_countries="cn,hk"
    )
    package.full_clean()
    assert package.coverage_countries == "CN, HK"
    package.coverage_countries = "CN, QQ"
    with pytest.raises(ValidationError, match="QQ"):
        package.full_clean()


def test_device_check_answers_a_plain_get_form_without_a_script(client, db):
    page = client.get(PLANS, {"device": "iPhone 13 mini"}).content.decode()
    assert "Yes: iPhone 13 mini supports eSIM." in page
    assert "Apple iPhone XS and later" in page and "mainland China" in page
    page = client.get(PLANS, {"device": "Nokia 3310"}).content.decode()
    assert "“Nokia 3310” is not on our list of eSIM phones." in page
    assert "*#06#" in page
    page = in_chinese(client).get(PLANS, {"device": "Galaxy S21"}).content.decode()
    assert "是的：Galaxy S21 支持 eSIM。" in page


def test_the_form_needs_no_script_and_the_script_has_the_same_list(client, db):
    page = client.get(PLANS).content.decode()
    form = re.search(r'<form method="get"[^>]*id="device-check"', page)
    assert form is not None
    assert '<option value="Pixel 3">' in page  # suggestions from a datalist, no script
    index = json.loads(re.search(r'<script id="device-index" type="application/json">(.*?)</script>', page).group(1))
    listed = json.loads(DEVICES_FILE.read_text())
    assert len(index) == sum(len(family["models"]) for family in listed["families"])


@pytest.mark.pure
def test_device_search_prefers_the_model_named():
    assert [m.model for m in find_devices("Apple iPhone 13 mini 128GB")] == ["iPhone 13 mini"]
    assert [m.model for m in find_devices("samsung galaxy s23")] == ["Galaxy S23"]
    assert [m.model for m in find_devices("S21")] == ["Galaxy S21", "Galaxy S21+", "Galaxy S21 Ultra"]
    assert find_devices("iPhone 8") == [] and find_devices("x") == []


def test_the_device_list_file_is_well_formed():
    data = json.loads(DEVICES_FILE.read_text())
    assert data["reviewed"] and data["sources"]
    names = [model for family in data["families"] for model in family["models"]]
    assert len(names) == len(set(names))
    for family in data["families"]:
        assert family["first"] == family["models"][0]


def test_a_customer_without_lines_is_shown_the_way_to_a_first_esim(customer_client):
    page = customer_client.get(reverse("accounts:home")).content.decode()
    assert "You have no eSIM yet" in page
    assert f'<a class="button" href="{PLANS}">Get an eSIM</a>' in page
    assert "Get another eSIM" not in page


def test_a_customer_with_lines_is_offered_another(customer_client, customer):
    make_line(owner=customer)
    make_package(name="Europe 10 GB", listed=True)
    page = customer_client.get(reverse("accounts:home")).content.decode()
    assert "You have no eSIM yet" not in page and "Get another eSIM" in page
    assert "Buy another eSIM" in customer_client.get(PLANS).content.decode()


def test_the_empty_state_reads_in_chinese(customer_client, customer):
    customer.language = "zh-hans"
    customer.save()
    page = in_chinese(customer_client).get(reverse("accounts:home")).content.decode()
    assert "您还没有 eSIM" in page and "获取 eSIM" in page


def test_everyone_sees_the_plans_link(customer_client):
    assert f'<a href="{PLANS}">Plans</a>' in Client().get("/accounts/login/").content.decode()
    assert f'<a href="{PLANS}">Plans</a>' in customer_client.get(reverse("accounts:home")).content.decode()


def test_the_plans_page_answers_only_get(client, db):
    assert client.post(PLANS).status_code == 405
