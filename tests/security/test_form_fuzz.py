"""Hypothesis over every form a customer can submit, with hostile values (huge, negative and
non-numeric numbers, NUL and RTL characters, long strings, missing and repeated fields, other
customers' and unknown ids): never a 5xx, and a request that is not accepted changes nothing."""

import os

import pytest
from django.test import Client
from djstripe.models import Customer as StripeCustomer
from djstripe.models import PaymentMethod
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accounts.models import Line, User
from payments import gateways
from payments.models import Charge
from provisioning.models import ProfileOrder
from renewals.models import Renewal, RenewalRule
from tests.builders import make_charge, make_line, make_package, make_renewal, make_rule
from tests.payments.conftest import create_card

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 25))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
PASSWORD = "correct horse battery"

HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "1\x00",
            "a\x00b",
            "\u202egnp.exe",
            "\u200f123",
            "٣",
            "１２",
            "-1",
            "0",
            "-0",
            "1e309",
            "NaN",
            "Infinity",
            "-Infinity",
            "1.5",
            "0.0001",
            "1,000",
            "99999999999999999999999",
            "-9223372036854775809",
            "9223372036854775808",
            "2147483648",
            "12.345678901234567890",
            "1E+9999",
            "0x10",
            "None",
            "null",
            "[]",
            "{}",
            "<script>alert(1)</script>",
            "' OR 1=1 --",
            "%00",
            "../../etc/passwd",
            "x" * 5000,
            "中文" * 300,
            "2026-02-30",
            "9999-12-31",
            "0001-01-01",
            "10000-01-01",
            "2026-13-01",
            "http://evil.example/",
            "//evil.example",
            "on",
            "off",
            "true",
            "card",
            "paypal",
            "sepa_debit",
            "seti_",
            "seti_" + "a" * 300,
            "pm_does_not_exist",
            "UTC",
            "Asia/Shanghai",
            "Mars/Olympus",
            "en",
            "zh-hans",
            "xx",
            "block",
            "bill_overage",
            "deduct_from_next",
        ]
    ),
    st.integers().map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)


def form_data(fields: dict) -> st.SearchStrategy:
    """A POST/GET body: each field missing, once, or repeated, with a plausible or hostile value."""

    def one_field(choices):
        if isinstance(choices, st.SearchStrategy):
            choices = [choices]
        plausible = (
            st.one_of(*[c if isinstance(c, st.SearchStrategy) else st.just(c) for c in choices]) if choices else None
        )
        value = st.one_of(plausible, HOSTILE) if choices else HOSTILE
        return st.one_of(st.none(), value, st.lists(value, min_size=2, max_size=3))

    return st.fixed_dictionaries({name: one_field(choices) for name, choices in fields.items()}).map(
        lambda data: {key: value for key, value in data.items() if value is not None}
    )


def _rows(queryset, *fields) -> list:
    return list(queryset.order_by("pk").values_list("pk", *fields))


def snapshot() -> dict:
    """Every row a customer's form could change."""
    return {
        "users": _rows(
            User.objects, "email", "phone", "phone_verified", "name", "language", "time_zone", "password", "is_active"
        ),
        "lines": _rows(
            Line.objects,
            "status",
            "package_id",
            "data_remaining_bytes",
            "data_used_bytes",
            "overage_bytes",
            "expires_at",
        ),
        "rules": _rows(
            RenewalRule.objects,
            "enabled",
            "package_id",
            "trigger_data_below_mb",
            "trigger_hours_before_expiry",
            "payment_method_id",
            "overage_policy",
            "overage_cap_mb",
            "max_renewals_per_day",
            "monthly_spend_cap_minor",
        ),
        "renewals": _rows(Renewal.objects, "status", "attempts", "next_attempt_at"),
        "charges": _rows(Charge.objects, "status", "amount_minor", "currency", "payment_intent_id"),
        "methods": _rows(PaymentMethod.objects, "customer_id"),
        "defaults": _rows(StripeCustomer.objects, "default_payment_method_id"),
        "emails": sorted(User.objects.values_list("emailaddress__email", "emailaddress__verified")),
    }


@pytest.fixture(autouse=True)
def no_payment_rate_limits(settings):
    """The fuzzer must reach the payment forms, not stop at their rate limit after five examples
    (tests/security/test_rate_limits.py proves the limits)."""
    settings.PAYMENTS_RATE_LIMITS = {action: "100000/m/user,100000/m/ip" for action in settings.PAYMENTS_RATE_LIMITS}


@pytest.fixture
def world(db, customer, other_customer):
    """The customer's line, rule, open renewal, charges and two saved cards, and the same for
    another customer, so that generated ids can point at someone else's objects."""
    package = make_package(name="Starter", price_minor=1800, currency="CNY")
    usd = make_package(name="Travel", price_minor=900, currency="USD")
    retired = make_package(name="Retired", active=False)
    line = make_line(owner=customer, package=package)
    other_line = make_line(owner=other_customer, package=package)
    rule = make_rule(line=line, package=package)
    other_rule = make_rule(line=other_line, package=package)
    renewal = make_renewal(line=line, package=package, rule=rule, status=Renewal.Status.FAILED)
    other_renewal = make_renewal(line=other_line, package=package, rule=other_rule, status=Renewal.Status.FAILED)
    charge = make_charge(user=customer, line=line, package=package, status=Charge.Status.SUCCEEDED)
    other_charge = make_charge(user=other_customer, line=other_line, package=package, status=Charge.Status.SUCCEEDED)
    methods = {}
    for user, names in ((customer, ("default", "second")), (other_customer, ("other",))):
        stripe_customer = gateways.ensure_customer(user)
        for name in names:
            methods[name] = gateways.attach_payment_method(
                customer_id=stripe_customer.id, payment_method_id=create_card()
            ).id
        gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=methods[names[0]])

    paid, other_paid = (
        make_renewal(line=ln, package=package, rule=r, status=Renewal.Status.SUCCEEDED)
        for ln, r in ((line, rule), (other_line, other_rule))
    )
    orders = {}
    for user, renewal_paid, name in ((customer, paid, "order"), (other_customer, other_paid, "other_order")):
        make_charge(
            user=user, line=renewal_paid.line, package=package, renewal=renewal_paid, attempt=1, status="succeeded"
        )
        orders[name] = ProfileOrder.objects.create(
            user=user,
            package=package,
            charge=make_charge(user=user, line=None, package=package, status=Charge.Status.SUCCEEDED),
            status=ProfileOrder.Status.RELEASED,
            iccid=f"89990000000000001{len(orders)}",
            smdp_address="smdp.example",
            matching_id=f"FUZZ-{name}",
        )

    def ids(*objs):
        return [str(o.pk) for o in objs] + ["0", "-1", "99999999999999999999", "abc"]

    return {
        "line": line,
        "other_line": other_line,
        "renewal": renewal,
        "other_renewal": other_renewal,
        "charge": charge,
        "other_charge": other_charge,
        "methods": methods,
        "line_ids": ids(line, other_line),
        "package_ids": ids(package, usd, retired),
        "method_ids": [methods["default"], methods["second"], methods["other"], "pm_missing", ""],
        "package": package,
        "usd": usd,
        "paid": paid,
        "other_paid": other_paid,
        **orders,
    }


def _targets(world) -> dict:
    """name -> (method, path choices, fields and their plausible values)."""
    line, renewal, charge = world["line"], world["renewal"], world["charge"]

    def own_and_other(fmt, own, other):
        return [fmt.format(own.pk), fmt.format(other.pk), fmt.format(0), fmt.format(10**20)]

    methods = world["method_ids"]
    rule_fields = {
        "enabled": ["on", ""],
        "package": world["package_ids"],
        "trigger_data_below_mb": ["200", "0", "-5", "10000001"],
        "trigger_hours_before_expiry": ["24", "0", "8760"],
        "payment_method_id": methods,
        "overage_policy": ["block", "deduct_from_next", "bill_overage"],
        "overage_cap_mb": ["100", "0"],
        "max_renewals_per_day": ["1", "2", "11"],
        "monthly_spend_cap": ["100", "18.001", "0.01", "1e9"],
        "confirm": ["1"],
        "edit": ["1"],
    }
    history_fields = {
        "line": world["line_ids"],
        "status": ["succeeded", "failed", "nope"],
        "date_from": ["2026-01-01", "2026-02-30"],
        "date_to": ["2025-01-01", "2026-12-31"],
        "page": ["1", "-1", "last", "999999"],
    }
    return {
        "settings": (
            "post",
            ["/settings/"],
            {"name": [], "language": ["en", "zh-hans"], "time_zone": ["UTC", "Asia/Shanghai"]},
        ),
        "language": ("post", ["/language/"], {"language": ["en", "zh-hans"], "next": ["/", "//evil.example"]}),
        "rule": ("post", own_and_other("/renewals/lines/{}/", line, world["other_line"]), rule_fields),
        "rule_off": (
            "post",
            own_and_other("/renewals/lines/{}/off/", line, world["other_line"]),
            {"next": ["/", "http://evil.example/"]},
        ),
        "pay_now": (
            "post",
            own_and_other("/payments/renewals/{}/pay/", renewal, world["other_renewal"]),
            {"payment_method": methods},
        ),
        "buy": (
            "post",
            own_and_other("/payments/lines/{}/buy/", line, world["other_line"]),
            {"package": world["package_ids"], "payment_method": methods},
        ),
        "method_default": (
            "post",
            [f"/payments/methods/{m}/default/" for m in methods if m] + ["/payments/methods/%00/default/"],
            {},
        ),
        "method_remove": ("post", [f"/payments/methods/{m}/remove/" for m in methods if m], {"replacement": methods}),
        "method_setup": (
            "post",
            ["/payments/methods/setup/"],
            {"method_type": ["card", "sepa_debit", "paypal", "bitcoin"]},
        ),
        "method_finish": (
            "post",
            ["/payments/methods/finish/"],
            {"setup_intent_id": ["seti_123", "seti_x"], "make_default": ["on"], "next": ["/"]},
        ),
        "method_return": ("get", ["/payments/methods/return/"], {"setup_intent": ["seti_123"], "make_default": ["on"]}),
        "charge_pages": (
            "get",
            own_and_other("/payments/charges/{}/receipt/", charge, world["other_charge"])
            + own_and_other("/payments/charges/{}/authenticate/", charge, world["other_charge"]),
            {},
        ),
        "charge_complete": ("post", own_and_other("/payments/charges/{}/complete/", charge, world["other_charge"]), {}),
        "history": ("get", ["/payments/history/"], history_fields),
        "history_csv": ("get", ["/payments/history.csv"], history_fields),
        "phone_change": (
            "post",
            ["/accounts/phone/change/"],
            {"phone": ["+8613800138000", "+86 138 0013 8001", "12345"]},
        ),
        "phone_verify": ("post", ["/accounts/phone/verify/"], {"code": ["123456", "000000"], "action": ["resend"]}),
    }


ANONYMOUS_TARGETS = {
    "signup": (
        "post",
        ["/accounts/signup/"],
        {
            "email": ["new@example.com", "alice@example.com", "a@b"],
            "phone": ["+8613800138002", "abc"],
            "password1": [PASSWORD],
            "password2": [PASSWORD],
        },
    ),
    "login": (
        "post",
        ["/accounts/login/"],
        {"login": ["alice@example.com", "+8613800138000"], "password": [PASSWORD, "wrong"], "remember": ["on"]},
    ),
}


def _send(client: Client, method: str, path: str, data: dict):
    if method == "get":
        return client.get(path, data)
    return client.post(path, data)


def _assert_survives(client, method, paths, fields, data):
    path = data.draw(st.sampled_from(paths), label="path")
    body = data.draw(form_data(fields), label="body")
    before = snapshot()
    response = _send(client, method, path, body)
    event(f"{response.status_code}")
    assert response.status_code < 500, (path, body, response.content[:2000])
    if response.status_code != 302:
        # Not accepted (or a page that only shows): the form re-rendered, a 4xx, or a read.
        assert snapshot() == before, (path, body, response.status_code)


CUSTOMER_FORMS = [
    "settings",
    "language",
    "rule",
    "rule_off",
    "pay_now",
    "buy",
    "method_default",
    "method_remove",
    "method_setup",
    "method_finish",
    "method_return",
    "charge_pages",
    "charge_complete",
    "history",
    "history_csv",
    "phone_change",
    "phone_verify",
]


@pytest.mark.parametrize("name", CUSTOMER_FORMS)
def test_customer_forms_never_fail_and_change_nothing_when_rejected(name, world, customer_client):
    method, paths, fields = _targets(world)[name]

    @FUZZ
    @given(data=st.data())
    def run(data):
        _assert_survives(customer_client, method, paths, fields, data)

    run()


@pytest.mark.parametrize("name", sorted(ANONYMOUS_TARGETS))
def test_sign_up_and_login_never_fail_and_change_nothing_when_rejected(name, world, client):
    method, paths, fields = ANONYMOUS_TARGETS[name]

    @FUZZ
    @given(data=st.data())
    def run(data):
        client.logout()
        _assert_survives(client, method, paths, fields, data)

    run()


# Every query-string parameter a customer page reads (and a few it does not), with plausible values;
# HOSTILE values are mixed in by form_data.
EXTREME_DATES = [
    "0001-01-01",
    "9999-12-31",
    "1999-12-31",
    "2000-01-01",
    "2999-12-31",
    "3000-01-01",
    "2026-11-10",
    st.dates().map(str),
]


def _query_fields(world) -> dict:
    return {
        "next": ["/", "//evil.example", "0", "http://evil.example/"],
        "page": ["1", "-1", "last", "999999", "0"],
        "line": world["line_ids"],
        "status": ["succeeded", "failed", "nope"],
        "date_from": EXTREME_DATES,
        "date_to": EXTREME_DATES,
        "setup_intent": ["seti_123", "seti_"],
        "make_default": ["on", "1"],
        "edit": ["1"],
        "confirm": ["1"],
        "language": ["en", "zh-hans"],
        "payment_method": world["method_ids"],
    }


def _customer_get_pages(world) -> dict:
    """Each customer portal page that answers GET (the access matrix's rows), on the customer's own
    objects and on another customer's."""
    from django.urls import reverse

    line, other_line, renewal, charge = world["line"], world["other_line"], world["renewal"], world["charge"]

    def both(name, key, own, other):
        return [reverse(name, kwargs={key: own.pk}), reverse(name, kwargs={key: other.pk})]

    return {
        "accounts:home": [reverse("accounts:home")],
        "accounts:line_detail": both("accounts:line_detail", "line_id", line, other_line),
        "accounts:settings": [reverse("accounts:settings")],
        "payments:methods": [reverse("payments:methods")],
        "payments:method_return": [reverse("payments:method_return")],
        "payments:method_remove": [
            reverse("payments:method_remove", kwargs={"payment_method_id": m}) for m in world["method_ids"] if m
        ],
        "payments:buy": both("payments:buy", "line_id", line, other_line),
        "payments:pay_renewal": both("payments:pay_renewal", "renewal_id", renewal, world["other_renewal"]),
        "payments:authenticate": both("payments:authenticate", "charge_id", charge, world["other_charge"]),
        "payments:receipt": both("payments:receipt", "charge_id", charge, world["other_charge"]),
        "payments:history": [reverse("payments:history")],
        "payments:history_csv": [reverse("payments:history_csv")],
        "renewals:rule": both("renewals:rule", "line_id", line, other_line),
        "renewals:paid": both("renewals:paid", "renewal_id", world["paid"], world["other_paid"]),
        "accounts:download_data": [reverse("accounts:download_data")],
        "accounts:close_account": [reverse("accounts:close_account")],
        "provisioning:buy": both("provisioning:buy", "package_id", world["package"], world["usd"]),
        "provisioning:order": both("provisioning:order", "order_id", world["order"], world["other_order"]),
        "provisioning:order_status": both(
            "provisioning:order_status", "order_id", world["order"], world["other_order"]
        ),
        "provisioning:charge_order": [
            reverse("provisioning:charge_order", kwargs={"charge_id": o.charge_id})
            for o in (world["order"], world["other_order"])
        ],
    }


def test_every_customer_page_answering_get_has_its_query_string_fuzzed(world):
    from tests.security.conftest import MATRIX

    assert set(_customer_get_pages(world)) == {row.name for row in MATRIX if row.get is not None}


@pytest.mark.parametrize(
    "name",
    sorted(
        [
            "accounts:home",
            "accounts:line_detail",
            "accounts:settings",
            "payments:methods",
            "payments:method_return",
            "payments:method_remove",
            "payments:buy",
            "payments:pay_renewal",
            "payments:authenticate",
            "payments:receipt",
            "payments:history",
            "payments:history_csv",
            "renewals:rule",
            "renewals:paid",
            "accounts:download_data",
            "accounts:close_account",
            "provisioning:buy",
            "provisioning:order",
            "provisioning:order_status",
            "provisioning:charge_order",
        ]
    ),
)
def test_customer_pages_never_fail_and_a_get_changes_nothing_whatever_the_query_string(name, world, customer_client):
    paths, fields = _customer_get_pages(world)[name], _query_fields(world)
    if name.startswith("payments:history"):
        # Dates are used only when the whole filter is valid: fuzz them with the others left out.
        fields = {key: fields[key] for key in ("date_from", "date_to", "page")}

    @FUZZ
    @given(data=st.data())
    def run(data):
        path = data.draw(st.sampled_from(paths), label="path")
        query = data.draw(form_data(fields), label="query")
        before = snapshot()
        response = customer_client.get(path, query)
        event(f"{response.status_code}")
        assert response.status_code < 500, (path, query, response.content[:2000])
        assert snapshot() == before, (path, query, response.status_code)

    run()


def test_turning_a_rule_off_with_a_bare_relative_next_redirects_there(world, customer_client):
    """Found by the fuzzer: a "next" without a slash was tried as a URL name, a 500."""
    response = customer_client.post(f"/renewals/lines/{world['line'].pk}/off/", {"next": "0"})
    assert response.status_code == 302
    assert response["Location"] == "0"
    assert not RenewalRule.objects.get(line=world["line"]).enabled


def test_a_nul_in_a_payment_method_id_is_not_found_and_changes_nothing(world, customer_client):
    """Found by the fuzzer: PostgreSQL refused the NUL in the lookup, a 500."""
    before = snapshot()
    assert customer_client.post("/payments/methods/%00/default/").status_code == 404
    assert customer_client.post(f"/payments/methods/{world['methods']['second']}%00/default/").status_code == 404
    assert snapshot() == before
