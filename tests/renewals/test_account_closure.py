"""Closing an account against the real localstripe (docs/data-rights.md): the open renewal is
cancelled and its intent withdrawn at the processor, the methods detached there, the lines
terminated with a network command, the person erased everywhere but the kept records (a scan of
every table), sign-in refused; another customer untouched; a payment in flight refuses the closure."""

import re

import pytest
import stripe
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from accounts.history import record_change
from accounts.models import ChangeRecord, Line, NetworkCommand, Notice, User
from accounts.services import erasure
from payments import gateways
from payments.models import Charge
from renewals.models import Renewal, RenewalRule
from renewals.services import account_closure, charging
from tests.builders import MB, make_charge, make_line, make_rule, make_user
from tests.payments.conftest import create_card

from .test_charging import THREE_D_SECURE_CARD, claimed

PHONE = "+8613800138000"
NAME = "Alice Liang"
EXP_MONTH, EXP_YEAR = 11, 2031


def _card(user, number: str, *, default: bool = True):
    stripe_customer = gateways.ensure_customer(user)
    pm = gateways.attach_payment_method(
        customer_id=stripe_customer.id,
        payment_method_id=create_card(number, exp_month=EXP_MONTH, exp_year=EXP_YEAR),
    )
    if default:
        gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=pm.id)
    return pm


def _text_fields(model) -> list[models.Field]:
    return [
        f
        for f in model._meta.concrete_fields
        if isinstance(f, (models.CharField, models.TextField, models.JSONField)) and not f.is_relation
    ]


def _rows_mentioning(needle: str) -> list[tuple[str, str, object]]:
    """(model, field, pk) of every row in every table whose text or JSON holds `needle`."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        for field in _text_fields(model):
            rows = model._default_manager.all()
            if isinstance(field, models.JSONField):
                rows = rows.annotate(_text=Cast(field.name, TextField())).filter(_text__icontains=needle)
            else:
                rows = rows.filter(**{f"{field.name}__icontains": needle})
            found += [(model._meta.label, field.name, pk) for pk in rows.values_list("pk", flat=True)]
    return found


def _rows_with_card(last4: str, exp_year: int) -> list[tuple[str, object]]:
    """Rows holding both a card's last 4 digits and its expiry year: the card, not just a receipt."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        fields = _text_fields(model)
        if not fields:
            continue
        condition = Q()
        for field in fields:
            condition |= Q(**{f"_t_{field.name}__contains": last4})
        annotated = model._default_manager.annotate(
            **{f"_t_{field.name}": Cast(field.name, TextField()) for field in fields}
        ).filter(condition)
        for row in annotated:
            text = " ".join(str(getattr(row, f"_t_{field.name}")) for field in fields)
            if re.search(rf"\b{exp_year}\b", text):
                found.append((model._meta.label, row.pk))
    return found


@pytest.fixture
def alice(db):
    user = make_user(email="alice.closing@example.com", phone=PHONE, name=NAME, phone_verified=True)
    EmailAddress.objects.create(user=user, email="alice.second@example.org", verified=True, primary=False)
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"})
    return user


@pytest.fixture
def bob(db):
    return make_user(email="bob.stays@example.com", phone="+8613900139000", name="Bob Stays")


def _world(alice, bob, package, policy):
    """Alice: a line whose renewal waits for 3-D Secure, a second card, a paid purchase, a notice and
    history naming her; Bob: a line with a rule and a card."""
    line = make_line(owner=alice, package=package, label="Alice's phone", data_remaining_bytes=100 * MB)
    rule = make_rule(line=line, package=package)
    _card(alice, "4242424242424242", default=False)
    secure = _card(alice, THREE_D_SECURE_CARD)
    now = timezone.now()
    renewal = charging.charge_renewal(renewal_id=claimed(rule, now).pk, now=now)
    assert renewal.status == Renewal.Status.REQUIRES_ACTION
    paid = make_charge(
        user=alice, line=line, package=package, status=Charge.Status.SUCCEEDED, payment_method_summary="Visa •••• 4242"
    )
    Notice.objects.create(user=alice, line=line, kind="usage", facts={"to": alice.email}, dedup_key=f"n-{alice.pk}")
    record_change(obj=alice, action="verification_email_sent", after={"emails": [alice.email]}, now=now)
    bob_line = make_line(owner=bob, package=package, label="Bob's phone")
    bob_rule = make_rule(line=bob_line, package=package)
    bob_card = _card(bob, "5555555555554444")
    return line, rule, renewal, secure, paid, bob_line, bob_rule, bob_card


def test_closing_leaves_nothing_of_the_person_outside_the_kept_records(alice, bob, package, policy, client):
    line, rule, renewal, secure, paid, bob_line, bob_rule, bob_card = _world(alice, bob, package, policy)
    intent_id = Charge.objects.get(renewal=renewal).payment_intent_id
    stripe_customer_id = gateways.customer_for_user(alice).id
    client.force_login(alice)

    closure = account_closure.close_account(
        user=alice, actor=alice, closed_by=account_closure.CUSTOMER, reason="", now=timezone.now()
    )

    # The open renewal is cancelled and its PaymentIntent withdrawn at the processor itself.
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED
    assert stripe.PaymentIntent.retrieve(intent_id, api_key=settings.STRIPE_SECRET_KEY)["status"] == "canceled"
    assert not RenewalRule.objects.get(pk=rule.pk).enabled
    # Both methods detached at localstripe, and the processor's customer no longer names her.
    assert closure.methods_detached == 2
    assert stripe.PaymentMethod.retrieve(secure.id, api_key=settings.STRIPE_SECRET_KEY)["customer"] is None
    at_processor = stripe.Customer.retrieve(stripe_customer_id, api_key=settings.STRIPE_SECRET_KEY)
    assert not at_processor.get("email") and not at_processor.get("name")
    # The line is terminated through the state machine: the network is told through the outbox.
    assert Line.objects.get(pk=line.pk).status == Line.Status.TERMINATED
    assert list(NetworkCommand.objects.filter(line=line).values_list("command", flat=True)) == ["suspend"]
    # She can no longer sign in, and her session is gone.
    assert client.get("/").status_code == 302
    assert not client.login(username="alice.closing@example.com", password="correct horse battery")
    erased = User.objects.get(pk=alice.pk)
    assert not erased.is_active and not erased.has_usable_password()
    assert erased.email == f"{closure.pseudonym}@{erasure.CLOSED_DOMAIN}" and closure.pseudonym.startswith("closed-")
    # The financial records are kept, linked to the erased row.
    assert Charge.objects.filter(user=erased).count() == 2
    assert Charge.objects.get(pk=paid.pk).payment_method_summary == "Visa •••• 4242"
    # A record of the closure, without personal data.
    closed = ChangeRecord.objects.get(action="account_closed", object_id=str(alice.pk))
    assert closed.actor_id == alice.pk and closed.after == {"closed_by": "customer"}
    assert closed.object_repr.startswith(closure.pseudonym)

    # Nothing of her anywhere: every table, every text and JSON field.
    for needle in ("alice.closing@example.com", "alice.second@example.org", PHONE, PHONE[3:], NAME):
        assert _rows_mentioning(needle) == [], needle
    assert _rows_with_card("3155", EXP_YEAR) == []
    assert _rows_with_card("4242", EXP_YEAR) == []
    assert not EmailAddress.objects.filter(user=erased).exists()
    assert not Authenticator.objects.filter(user=erased).exists()
    assert not Notice.objects.filter(user=erased).exists()

    # Bob is untouched: his line, rule, card (at the processor too), email and phone.
    assert Line.objects.get(pk=bob_line.pk).status == bob_line.status
    assert RenewalRule.objects.get(pk=bob_rule.pk).enabled
    assert stripe.PaymentMethod.retrieve(bob_card.id, api_key=settings.STRIPE_SECRET_KEY)["customer"]
    assert _rows_mentioning("bob.stays@example.com")
    assert User.objects.get(pk=bob.pk).is_active
    assert _rows_with_card("4444", EXP_YEAR)  # the scan does find a card that is still there


def test_closing_while_a_renewal_charge_is_in_flight_refuses_and_erases_nothing(alice, package, policy):
    line = make_line(owner=alice, package=package, data_remaining_bytes=100 * MB)
    rule = make_rule(line=line, package=package)
    _card(alice, "4242424242424242")
    renewal = claimed(rule, timezone.now())
    # The charge step wrote its attempt and sent it; the answer has not been recorded yet.
    make_charge(user=alice, line=line, package=package, renewal=renewal, attempt=1, status=Charge.Status.PENDING)

    with pytest.raises(account_closure.PaymentInFlight):
        account_closure.close_account(
            user=alice, actor=alice, closed_by=account_closure.CUSTOMER, reason="", now=timezone.now()
        )

    # Auto-renewal is off (no new charge can start), the attempt in flight is left to finish, and
    # nothing else happened: the line works, the card is attached, she is still herself.
    assert not RenewalRule.objects.get(pk=rule.pk).enabled
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CHARGING
    assert Line.objects.get(pk=line.pk).status == line.status
    assert gateways.default_payment_method_id(alice)
    user = User.objects.get(pk=alice.pk)
    assert user.is_active and user.email == "alice.closing@example.com"


def test_a_staff_account_is_not_closed_this_way(db):
    staff = make_user(email="ops@example.com", is_staff=True)
    with pytest.raises(erasure.CustomerOnly):
        account_closure.close_account(
            user=staff, actor=staff, closed_by=account_closure.CUSTOMER, reason="", now=timezone.now()
        )
    assert User.objects.get(pk=staff.pk).email == "ops@example.com"
