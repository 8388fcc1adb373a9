"""The customer's auto-renewal pages: who may see them, the form's errors, the confirmation step,
turning off in one click, banners, and both languages."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from renewals.models import Renewal, RenewalRule
from renewals.services import rules, triggers
from tests.builders import make_package, make_rule

VALID = {
    "enabled": "on",
    "trigger_data_below_mb": "500",
    "trigger_hours_before_expiry": "",
    "payment_method_id": "",
    "overage_policy": "block",
    "overage_cap_mb": "",
    "max_renewals_per_day": "2",
    "monthly_spend_cap": "300.00",
}


def form_data(package_obj, **changes):
    data = dict(VALID, package=str(package_obj.pk))
    data.update(changes)
    return data


def rule_url(line):
    return reverse("renewals:rule", args=[line.pk])


def test_anonymous_visitor_is_sent_to_login(client, line):
    for response in (client.get(rule_url(line)), client.post(reverse("renewals:turn_off", args=[line.pk]))):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))


def test_another_customers_line_and_rule_are_404(client, line, package, other_customer, policy):
    rule = make_rule(line=line, package=package)
    client.force_login(other_customer)
    assert client.get(rule_url(line)).status_code == 404
    assert client.post(rule_url(line), form_data(package, confirm="")).status_code == 404
    assert client.post(reverse("renewals:turn_off", args=[line.pk])).status_code == 404
    rule.refresh_from_db()
    assert rule.enabled and rule.trigger_data_below_mb == 500


def test_page_explains_methods_and_the_operator_minimum(customer_client, line, policy, django_assert_max_num_queries):
    policy.minimum_renewal_minor = 5000
    policy.save()
    # 15: the line's current state (line, newest renewal, waiting purchase, rule) joined the page,
    # and the customer's currencies (one query) choose the methods it lists.
    with django_assert_max_num_queries(15):
        body = customer_client.get(rule_url(line)).content.decode()
    # A CNY line: SEPA is offered only where the euro is (docs/payment-methods.md).
    assert "credit card, debit card." in body and "SEPA" not in body
    assert "CN¥50.00" in body
    assert 'name="trigger_data_below_mb"' in body


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"trigger_data_below_mb": ""}, None, "Choose at least one trigger"),
        ({"overage_cap_mb": "100"}, "overage_cap_mb", "only applies when data continues"),
        ({"overage_policy": "deduct_from_next"}, "overage_cap_mb", "Set how much data may continue"),
        ({"overage_policy": "bill_overage"}, "overage_cap_mb", "Set how much data may continue"),
        ({"trigger_data_below_mb": str(10 * 1024)}, "trigger_data_below_mb", "below the package"),
        (
            {"trigger_data_below_mb": "", "trigger_hours_before_expiry": str(30 * 24)},
            "trigger_hours_before_expiry",
            "shorter than the package",
        ),
        ({"monthly_spend_cap": "50.00"}, "monthly_spend_cap", "at least one renewal"),
        ({"monthly_spend_cap": "300.001"}, "monthly_spend_cap", "decimal places"),
        ({"monthly_spend_cap": "lots"}, "monthly_spend_cap", "Enter a number"),
        ({"max_renewals_per_day": "0"}, "max_renewals_per_day", "greater than or equal to 1"),
        ({"trigger_data_below_mb": "-5"}, "trigger_data_below_mb", "greater than or equal to 0"),
        ({"package": "999999"}, "package", "Select a valid choice"),
        ({"overage_policy": "free_data"}, "overage_policy", "Select a valid choice"),
    ],
)
def test_invalid_combinations_are_form_errors(customer_client, line, package, policy, changes, field, message):
    response = customer_client.post(rule_url(line), form_data(package, **changes))
    assert response.status_code == 200
    form = response.context["form"]
    errors = form.errors.get(field or "__all__", [])
    assert any(message in error for error in errors), form.errors
    assert not RenewalRule.objects.exists()


def test_package_below_the_operator_minimum_is_refused(customer_client, line, policy):
    policy.minimum_renewal_minor = 5000
    policy.save()
    cheap = make_package(price_minor=4999)
    response = customer_client.post(rule_url(line), form_data(cheap))
    assert "The minimum renewal amount is CN¥50.00." in response.context["form"].errors["package"]


def test_review_restates_the_rule_in_plain_words_and_saves_nothing(customer_client, line, package, policy):
    response = customer_client.post(rule_url(line), form_data(package, review=""))
    assert response.status_code == 200
    assert response.context["summary"] == (
        f"When this line has 500 MB or less left, we will charge CN¥98.00 for {package.name} to your default card "
        "(you have none yet: add one before the first renewal), at most 2 times a day and CN¥300.00 a month. "
        "If data runs out before the renewal, data stops until the line is renewed."
    )
    assert not RenewalRule.objects.exists()


def test_confirming_saves_the_rule_with_money_in_minor_units(customer_client, line, package, policy):
    response = customer_client.post(rule_url(line), form_data(package, confirm="", max_renewals_per_day="1"))
    assert response.status_code == 302
    rule = RenewalRule.objects.get(line=line)
    assert rule.enabled and rule.package == package and rule.trigger_data_below_mb == 500
    assert rule.monthly_spend_cap_minor == 30000 and rule.max_renewals_per_day == 1
    assert "Your auto-renewal rule is saved." in customer_client.get(response["Location"]).content.decode()


def test_confirm_page_posts_back_exactly_what_was_reviewed(customer_client, line, package, policy):
    page = customer_client.post(
        rule_url(line), form_data(package, review="", trigger_hours_before_expiry="24")
    ).content.decode()
    import re

    posted = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    posted["confirm"] = ""
    assert customer_client.post(rule_url(line), posted).status_code == 302
    rule = RenewalRule.objects.get(line=line)
    assert (rule.trigger_data_below_mb, rule.trigger_hours_before_expiry, rule.monthly_spend_cap_minor) == (
        500,
        24,
        30000,
    )


def test_turning_on_a_rule_for_a_line_already_below_its_threshold_renews_now(
    customer_client, low_line, package, policy, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        customer_client.post(rule_url(low_line), form_data(package, confirm=""))
    assert Renewal.objects.get(line=low_line).status == Renewal.Status.CHARGING


def test_turning_off_takes_one_click_and_cancels_the_queued_renewal(customer_client, rule):
    renewal = triggers.open_renewal(rule=rule, now=timezone.now(), trigger="data")
    response = customer_client.post(
        reverse("renewals:turn_off", args=[rule.line_id]),
        {"next": reverse("accounts:line_detail", args=[rule.line_id])},
    )
    assert response.status_code == 302 and response["Location"] == reverse("accounts:line_detail", args=[rule.line_id])
    rule.refresh_from_db()
    renewal.refresh_from_db()
    assert not rule.enabled and renewal.status == Renewal.Status.CANCELLED


def test_turn_off_ignores_a_foreign_redirect(customer_client, rule):
    response = customer_client.post(
        reverse("renewals:turn_off", args=[rule.line_id]), {"next": "https://evil.example/"}
    )
    assert response["Location"] == rule_url(rule.line)


def test_turn_off_is_post_only(customer_client, rule):
    assert customer_client.get(reverse("renewals:turn_off", args=[rule.line_id])).status_code == 405
    rule.refresh_from_db()
    assert rule.enabled


def test_banner_for_a_scheduled_retry_links_to_pay_now(customer_client, rule):
    renewal = triggers.open_renewal(rule=rule, now=timezone.now(), trigger="data")
    Renewal.objects.filter(pk=renewal.pk).update(
        status=Renewal.Status.RETRY_SCHEDULED, next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    body = customer_client.get(rule_url(rule.line)).content.decode()
    assert "failed; we will try again on" in body
    assert f'href="{reverse("payments:pay_renewal", args=[renewal.pk])}">Pay now' in body


def test_chinese_customer_sees_the_rule_in_chinese(customer_client, line, package, policy):
    customer_client.cookies["django_language"] = "zh-hans"
    response = customer_client.post(rule_url(line), form_data(package, review=""), HTTP_ACCEPT_LANGUAGE="zh-hans")
    summary = response.context["summary"]
    assert "500 MB" in summary and "¥98.00" in summary and "¥300.00" in summary and "CN¥" not in summary
    assert "When this line" not in summary
    with translation.override("zh-hans"):
        assert "自动续费" in customer_client.get(rule_url(line), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()


def test_page_restates_the_saved_rule(customer_client, rule):
    body = customer_client.get(rule_url(rule.line)).content.decode()
    assert "When this line has 500 MB or less left, we will charge CN¥98.00 for" in body
    assert "to your default card" in body
    rules.turn_off_rule(rule=rule, now=timezone.now())
    assert "Auto-renewal is off." in customer_client.get(rule_url(rule.line)).content.decode()


def test_confirmation_names_the_card_and_the_overage_choice_cap_and_price(
    customer_client, customer, line, package, policy
):
    from payments import gateways
    from tests.payments.conftest import create_card

    policy.overage_price_per_gb_minor = 1500
    policy.save()
    stripe_customer = gateways.ensure_customer(customer)
    method = gateways.attach_payment_method(
        customer_id=stripe_customer.id, payment_method_id=create_card(exp_month=12, exp_year=2030)
    )
    gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=method.id)
    response = customer_client.post(
        rule_url(line), form_data(package, review="", overage_policy="bill_overage", overage_cap_mb="200")
    )
    summary = response.context["summary"]
    assert f"we will charge CN¥98.00 for {package.name} to Visa •••• 4242, expires 12/30," in summary
    assert "up to 200 MB more, billed at CN¥15.00 per GB with the next renewal." in summary
    assert "My default" not in response.content.decode()
