"""seed_demo_payments against the real localstripe: the demo customer's card and Tablet rule,
idempotent, and never against anything but a local stand-in with a test key."""

from io import StringIO

import pytest
import stripe
from django.core.management import CommandError, call_command
from djstripe.models import Customer, PaymentMethod

from accounts.models import Line, Package, User
from console.management.commands.seed_demo_payments import TABLET_ICCID
from payments import gateways
from renewals.models import Renewal, RenewalRule


def _run(*args) -> str:
    out = StringIO()
    call_command("seed_demo_payments", *args, stdout=out)
    return out.getvalue()


def _demo_state():
    user = User.objects.get(email="customer@example.com")
    customers = list(Customer.objects.filter(subscriber=user))
    assert len(customers) == 1
    customer = customers[0]
    methods = list(PaymentMethod.objects.filter(customer=customer))
    # localstripe agrees with our mirror: exactly these methods are attached.
    remote = [pm["id"] for pm in stripe.PaymentMethod.list(customer=customer.id, type="card")["data"]]
    assert sorted(remote) == sorted(pm.id for pm in methods)
    return user, customer, methods


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=StringIO())


def test_twice_leaves_one_customer_one_default_card_and_one_enabled_rule(demo):
    first = _run()
    second = _run()
    user, customer, methods = _demo_state()
    assert len(methods) == 1
    assert methods[0].stripe_data["card"]["last4"] == "4242"
    assert gateways.default_payment_method_id(user) == methods[0].id
    rules = list(RenewalRule.objects.filter(line__owner=user))
    assert len(rules) == 1
    rule = rules[0]
    assert rule.line.iccid == TABLET_ICCID
    assert rule.enabled and rule.trigger_data_below_mb == 200 and rule.payment_method_id == ""
    assert rule.max_renewals_per_day == 10
    assert rule.package == Package.objects.order_by("price_minor").first()
    # The Tablet has 300 MB: nothing to renew yet.
    assert not Renewal.objects.exists()
    assert f"Stripe customer {customer.id}, default method Visa •••• 4242 ({methods[0].id})" in first
    assert "auto-renewal rule created on Tablet" in first
    assert "auto-renewal rule kept (already there) on Tablet" in second


def test_card_flag_replaces_the_demo_card_and_keeps_the_rule(demo):
    _run()
    rule = RenewalRule.objects.get()
    old = PaymentMethod.objects.get()
    _run("--card", "4000 0000 0000 0341")
    _run("--card", "4000000000000341")
    user, _customer, methods = _demo_state()
    assert [pm.stripe_data["card"]["last4"] for pm in methods] == ["0341"]
    assert gateways.default_payment_method_id(user) == methods[0].id
    assert stripe.PaymentMethod.retrieve(old.id)["customer"] is None
    assert RenewalRule.objects.get().pk == rule.pk


def test_a_customer_rule_is_left_as_the_customer_set_it(demo):
    _run()
    RenewalRule.objects.update(enabled=False)
    assert "auto-renewal rule kept (already there) on Tablet 89860012345678901245: off" in _run()
    assert not RenewalRule.objects.get().enabled


@pytest.mark.parametrize(
    "setting, value",
    [
        ("STRIPE_API_BASE", "https://api.stripe.com"),
        ("STRIPE_API_BASE", "http://stripe.example.com:8420"),
        ("STRIPE_SECRET_KEY", "sk_live_not_a_test_key"),
        ("STRIPE_LIVE_MODE", True),
    ],
)
def test_refuses_unless_stripe_is_local_with_a_test_key(demo, settings, setting, value):
    setattr(settings, setting, value)
    with pytest.raises(CommandError, match="refusing to seed payment data"):
        _run()
    assert not Customer.objects.exists()
    assert not RenewalRule.objects.exists()


def test_needs_the_demo_customer(db):
    with pytest.raises(CommandError, match="run `manage.py seed_demo` first"):
        _run()
    assert not Line.objects.exists()


def test_the_gateway_sends_card_numbers_only_to_a_local_stand_in(db, settings):
    # Works against the suite's localstripe...
    assert gateways.create_local_test_card("4242424242424242").startswith("pm_")
    # ...and refuses as soon as the configuration is not local, even though the SDK still points there.
    settings.STRIPE_API_BASE = "https://api.stripe.com"
    with pytest.raises(gateways.GatewayError) as refused:
        gateways.create_local_test_card("4242424242424242")
    assert refused.value.code == "not_local"
