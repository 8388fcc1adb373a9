"""Rate limits hit for real (counters in the suite's Redis): allauth's on login and SMS codes, ours
on buying, paying a renewal now and adding a payment method. A refused attempt is a translated 429,
never a 500, and reaches neither our Charge table nor the processor."""

import stripe
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import sms
from accounts.models import Line
from payments import gateways
from payments.models import Charge
from renewals.models import Renewal, RenewalRule
from tests.accounts.helpers import PASSWORD, sign_up
from tests.builders import make_user
from tests.payments.conftest import create_card

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN"}


def remote_intents(kind, customer_id: str) -> list[str]:
    """The processor's own list (localstripe), not ours."""
    return [
        i["id"]
        for i in kind.list(limit=100, api_key=django_settings.STRIPE_SECRET_KEY).auto_paging_iter()
        if i["customer"] == customer_id
    ]


def card_for(user, number: str = "4242424242424242") -> str:
    stripe_customer = gateways.ensure_customer(user)
    pm = gateways.attach_payment_method(customer_id=stripe_customer.id, payment_method_id=create_card(number))
    gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=pm.id)
    return pm.id


# --- allauth's limits ---------------------------------------------------------------------------


def test_login_flood_from_one_address_gets_a_chinese_429_page(db):
    # allauth's "login" limit: 30 attempts a minute per IP, whatever the account.
    client = Client(**ZH)
    for n in range(30):
        response = client.post(reverse("account_login"), {"login": f"nobody{n}@example.com", "password": "x"})
        assert response.status_code == 200
    user = make_user(email="real@example.com", password=PASSWORD)
    response = client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    assert response.status_code == 429
    page = response.content.decode()
    assert "请求过于频繁" in page and 'id="site-header"' in page
    assert client.get(reverse("accounts:home")).status_code == 302  # not logged in
    # Another address is not affected.
    other = Client(REMOTE_ADDR="192.0.2.7")
    assert other.post(reverse("account_login"), {"login": user.email, "password": PASSWORD}).status_code == 302


def test_sms_code_resend_within_30_seconds_sends_nothing_and_says_so(client, db):
    # allauth's "verify_phone" limit (one code per number per 30 s) on the resend button: the page
    # comes back with allauth's translated error instead of a 429 page, and no SMS goes out.
    sign_up(client, email="ann@example.com", phone="+8613800138000", **ZH)
    assert len(sms.outbox) == 1
    response = client.post(reverse("account_verify_phone"), {"action": "resend"}, follow=True, **ZH)
    assert response.status_code == 200
    assert "请稍等，您已经提交过多次请求。" in response.content.decode()
    assert len(sms.outbox) == 1


def test_sms_codes_to_many_numbers_from_one_address_are_limited(db):
    # allauth's "verify_phone": 3 codes a minute per IP, so one address cannot spray SMS.
    for n in range(3):
        sign_up(Client(), email=f"p{n}@example.com", phone=f"+861380013800{n}")
    assert len(sms.outbox) == 3
    response = sign_up(Client(), email="p9@example.com", phone="+8613800138009")
    assert response.status_code == 429
    assert len(sms.outbox) == 3


# --- payments -----------------------------------------------------------------------------------


def test_buying_beyond_the_per_user_limit_is_refused_before_any_charge(
    settings, customer, customer_client, line, package
):
    settings.PAYMENTS_RATE_LIMITS = {**settings.PAYMENTS_RATE_LIMITS, "payment": "2/10m/user,50/10m/ip"}
    method = card_for(customer)
    url = reverse("payments:buy", args=[line.pk])
    for _ in range(2):
        response = customer_client.post(url, {"package": package.pk, "payment_method": method})
        assert response.status_code == 302 and "/receipt/" in response["Location"]
    stripe_customer = gateways.ensure_customer(customer).id
    assert Charge.objects.filter(user=customer).count() == 2
    assert len(remote_intents(stripe.PaymentIntent, stripe_customer)) == 2

    response = customer_client.post(url, {"package": package.pk, "payment_method": method}, **ZH)
    assert response.status_code == 429
    assert "付款尝试过于频繁" in response.content.decode()
    assert Charge.objects.filter(user=customer).count() == 2
    assert len(remote_intents(stripe.PaymentIntent, stripe_customer)) == 2
    # Looking is not paying: the page itself still opens.
    assert customer_client.get(url).status_code == 200


def test_pay_now_beyond_the_limit_is_a_429_and_makes_no_intent(settings, customer, customer_client, line, package):
    settings.PAYMENTS_RATE_LIMITS = {**settings.PAYMENTS_RATE_LIMITS, "payment": "2/10m/user,50/10m/ip"}
    method = card_for(customer, "4000000000000341")  # added fine, declined at every charge
    rule = RenewalRule.objects.create(line=line, enabled=True, package=package, trigger_data_below_mb=500)
    Line.objects.filter(pk=line.pk).update(status=Line.Status.SUSPENDED, data_remaining_bytes=0)
    renewal = Renewal.objects.create(
        line=line,
        rule=rule,
        package=package,
        amount_minor=package.price_minor,
        currency=package.currency,
        status=Renewal.Status.FAILED,
        attempts=4,
        completed_at=timezone.now(),
        last_failure_code="card_declined",
    )
    url = reverse("payments:pay_renewal", args=[renewal.pk])
    for _ in range(2):
        assert customer_client.post(url, {"payment_method": method}).status_code == 302
    charges = Charge.objects.filter(renewal=renewal).count()
    intents = remote_intents(stripe.PaymentIntent, gateways.ensure_customer(customer).id)
    assert charges == 2 and len(intents) == 2

    response = customer_client.post(url, {"payment_method": method})
    assert response.status_code == 429
    assert "Too many payment attempts" in response.content.decode()
    assert Charge.objects.filter(renewal=renewal).count() == charges
    assert remote_intents(stripe.PaymentIntent, gateways.ensure_customer(customer).id) == intents


def test_adding_methods_beyond_the_limit_gets_429_json_and_no_setup_intent(settings, customer, customer_client):
    settings.PAYMENTS_RATE_LIMITS = {**settings.PAYMENTS_RATE_LIMITS, "payment_method": "3/h/user,50/h/ip"}
    url = reverse("payments:method_setup")
    for _ in range(3):
        assert customer_client.post(url, {"method_type": "card"}).status_code == 200
    stripe_customer = gateways.ensure_customer(customer).id
    assert len(remote_intents(stripe.SetupIntent, stripe_customer)) == 3

    response = customer_client.post(url, {"method_type": "card"}, **ZH)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert "付款尝试过于频繁" in response.json()["error"]
    assert len(remote_intents(stripe.SetupIntent, stripe_customer)) == 3


def test_one_address_is_limited_across_accounts(settings, db, package):
    # Card testers rotate accounts: the per-IP limit counts them together.
    settings.PAYMENTS_RATE_LIMITS = {**settings.PAYMENTS_RATE_LIMITS, "payment_method": "5/h/user,4/h/ip"}
    url = reverse("payments:method_setup")
    answers = []
    for n in range(3):
        client = Client(REMOTE_ADDR="198.51.100.9")
        client.force_login(make_user(email=f"tester{n}@example.com"))
        answers += [client.post(url, {"method_type": "card"}).status_code for _ in range(2)]
    assert answers == [200, 200, 200, 200, 429, 429]
    elsewhere = Client(REMOTE_ADDR="198.51.100.10")
    elsewhere.force_login(make_user(email="honest@example.com"))
    assert elsewhere.post(url, {"method_type": "card"}).status_code == 200
