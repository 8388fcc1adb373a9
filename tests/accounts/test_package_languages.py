"""A package's name and description per language, filled in by the operator: a Chinese customer
reads the Chinese one, and the default where none was given; its validity reads "7 天"
(docs/translations.md)."""

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import translation

from accounts.models import Package
from console.admin.packages import PackageForm
from tests.builders import make_line, make_package


@pytest.mark.pure
def test_the_chinese_name_and_description_are_used_in_chinese_and_the_default_otherwise():
    package = Package(
        name="Starter 1 GB / 7 days",
        name_zh_hans="入门套餐 1 GB / 7 天",
        description="For a weekend away.",
        description_zh_hans="适合周末短途旅行。",
        validity_days=7,
    )
    with translation.override("zh-hans"):
        assert package.localized_name == "入门套餐 1 GB / 7 天"
        assert package.localized_description == "适合周末短途旅行。"
        assert package.validity_text == "7 天"
    with translation.override("en"):
        assert package.localized_name == "Starter 1 GB / 7 days"
        assert package.localized_description == "For a weekend away."
        assert package.validity_text == "7 days"
        package.validity_days = 1
        assert package.validity_text == "1 day"


@pytest.mark.pure
def test_a_package_without_a_chinese_name_shows_its_default_name_in_chinese():
    package = Package(name="Plus 50 GB / 30 days", validity_days=30)
    with translation.override("zh-hans"):
        assert package.localized_name == "Plus 50 GB / 30 days"
        assert package.validity_text == "30 天"


@pytest.mark.pure
def test_the_operator_edits_both_languages_in_the_admin():
    assert {"name", "name_zh_hans", "description", "description_zh_hans"} <= set(PackageForm.base_fields)


def test_the_account_page_names_the_package_in_the_customers_language(customer_client, customer):
    package = make_package(name="Standard 10 GB / 30 days", name_zh_hans="标准套餐 10 GB / 30 天")
    make_line(owner=customer, package=package)
    english = customer_client.get(reverse("accounts:home")).content.decode()
    assert "Standard 10 GB / 30 days" in english and "标准套餐" not in english
    customer.language = "zh-hans"
    customer.save()
    chinese = customer_client.get(reverse("accounts:home")).content.decode()
    assert "标准套餐 10 GB / 30 天" in chinese and "Standard 10 GB" not in chinese


def test_the_demo_seed_gives_every_package_a_chinese_name(db):
    call_command("seed_demo")
    names = dict(Package.objects.values_list("name", "name_zh_hans"))
    assert names == {
        "Starter 1 GB / 7 days": "入门套餐 1 GB / 7 天",
        "Standard 10 GB / 30 days": "标准套餐 10 GB / 30 天",
        "Plus 50 GB / 30 days": "畅享套餐 50 GB / 30 天",
    }
