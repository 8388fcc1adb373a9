"""Issue "Money seams": every case seen on main is a regression test here, against the real
localstripe. What the processor holds is read from its own list of PaymentIntents, not our tables.
The design as built is docs/money.md."""
from datetime import timedelta

import time_machine
from django.utils import timezone

from accounts.models import Line
from payments.models import Charge
from renewals import services
from renewals.models import Renewal, RenewalRule
from tests.factories import GB, make_package

from .conftest import payment_intents_for
from .test_charging import DECLINING_CARD, claimed


def declined_once(rule, add_card) -> Renewal:
    """A renewal of `rule` whose first off-session attempt was declined: waiting for its retry."""
    add_card(DECLINING_CARD)
    now = timezone.now()
    renewal = services.charge_renewal(renewal_id=claimed(rule, now).pk, now=now)
    assert renewal.status == Renewal.Status.RETRY_SCHEDULED and renewal.failures == 1
    return renewal


def retried(renewal) -> Renewal:
    """The scheduled retry, run by the dispatcher at its time."""
    with time_machine.travel(renewal.next_attempt_at + timedelta(seconds=1), tick=False):
        now = timezone.now()
        assert services.claim_due_renewals(now=now, renewal_ids=[renewal.pk]) == [renewal.pk]
        return services.charge_renewal(renewal_id=renewal.pk, now=now)


# --- case 2: a renewal freezes its terms when it opens -------------------------------------------

def test_a_retry_after_the_rule_switched_package_charges_and_applies_the_terms_the_renewal_opened_with(rule, add_card):
    """Case 2: the retry charged the new package's price in the old package's currency (50000
    "CNY" for a 9800-CNY package) and applied the old package."""
    bought = rule.package  # 10 GB, CNY 98.00
    renewal = declined_once(rule, add_card)
    dearer = make_package(name="50 GB", data_allowance_bytes=50 * GB, price_minor=50000, currency="USD")
    RenewalRule.objects.filter(pk=rule.pk).update(package=dearer)
    add_card("4242424242424242")
    data_before = Line.objects.get(pk=rule.line_id).data_remaining_bytes

    renewal = retried(renewal)

    assert renewal.status == Renewal.Status.SUCCEEDED
    assert [(pi["amount"], pi["currency"], pi["status"]) for pi in payment_intents_for(renewal)] == [
        (9800, "cny", "requires_payment_method"), (9800, "cny", "succeeded")]
    paid = Charge.objects.get(renewal=renewal, status=Charge.Status.SUCCEEDED)
    assert (paid.amount_minor, paid.currency, paid.package_id) == (9800, "CNY", bought.pk)
    line = Line.objects.get(pk=rule.line_id)
    assert line.package_id == bought.pk
    assert line.data_remaining_bytes == data_before + bought.data_allowance_bytes
    # The rule's new package is the next cycle's.
    following = services.open_renewal(rule=RenewalRule.objects.get(pk=rule.pk), now=timezone.now(), trigger="expiry")
    assert (following.package_id, following.amount_minor, following.currency) == (dearer.pk, 50000, "USD")


def test_an_operator_editing_the_package_price_and_currency_leaves_the_open_renewal_at_its_terms(rule, add_card):
    """Case 2: an operator editing a package's price or currency did the same to open renewals."""
    package = rule.package
    renewal = declined_once(rule, add_card)
    package.price_minor, package.currency = 1500, "EUR"
    package.save()
    add_card("4242424242424242")

    renewal = retried(renewal)

    assert renewal.status == Renewal.Status.SUCCEEDED
    assert [(pi["amount"], pi["currency"]) for pi in payment_intents_for(renewal)] == [(9800, "cny"), (9800, "cny")]
    assert (renewal.amount_minor, renewal.currency) == (9800, "CNY")


# --- case 5: overage is conserved ---------------------------------------------------------------

def use(line, nbytes: int, now) -> None:
    """The network partner reports `nbytes` of usage on the line (the usage API's service)."""
    from accounts.services.usage import UsageInput, ingest_usage

    record = UsageInput(index=0, partner_record_id=f"use-{line.pk}-{now.timestamp()}-{nbytes}", iccid=line.iccid, bytes=nbytes,
                        start=now - timedelta(minutes=10), end=now)
    ingest_usage(records=[record], now=now)


def beyond_zero(line, *, granted: int, billed: int) -> int:
    """Conservation, read off the line: data used beyond zero = granted + billed + still owed,
    `granted` being the part of a new allowance spent on it."""
    return granted + billed + line.overage_bytes


def test_overage_used_while_a_renewal_waits_for_3ds_is_still_owed_after_it_is_paid(rule, policy, add_card):
    """Case 5: overage used after the renewal was priced was cleared unbilled."""
    from payments import services as payment_services
    from tests.payments.conftest import authenticate_as_browser

    from .test_charging import THREE_D_SECURE_CARD

    policy.overage_price_per_gb_minor = 1000
    policy.save()
    RenewalRule.objects.filter(pk=rule.pk).update(overage_policy=RenewalRule.OveragePolicy.BILL_OVERAGE, overage_cap_mb=4096)
    rule.refresh_from_db()
    line = rule.line
    Line.objects.filter(pk=line.pk).update(data_remaining_bytes=0, overage_bytes=GB)
    add_card(THREE_D_SECURE_CARD)
    now = timezone.now()
    renewal = services.charge_renewal(renewal_id=claimed(rule, now).pk, now=now)
    assert renewal.status == Renewal.Status.REQUIRES_ACTION
    assert (renewal.amount_minor, renewal.overage_billed_bytes) == (9800 + 1000, GB)
    use(line, 512 * 1024**2, now)  # service goes on while the customer is at the bank's page
    [intent] = payment_intents_for(renewal)
    assert authenticate_as_browser(intent["id"], intent["client_secret"]).status_code == 200
    payment_services.complete_authentication(user=line.owner, charge_id=Charge.objects.get(renewal=renewal).pk)

    renewal.refresh_from_db()
    line.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.overage_billed_bytes == GB
    granted = rule.package.data_allowance_bytes - line.data_remaining_bytes
    assert beyond_zero(line, granted=granted, billed=GB) == GB + 512 * 1024**2
    assert [(pi["amount"], pi["status"]) for pi in payment_intents_for(renewal)] == [(10800, "succeeded")]


def test_deduct_from_next_keeps_overage_beyond_the_new_allowance_owed(rule, add_card):
    """Case 5: with "deduct from next", 15 GB of overage and a 10 GB package left 0 and owed 0."""
    RenewalRule.objects.filter(pk=rule.pk).update(overage_policy=RenewalRule.OveragePolicy.DEDUCT_FROM_NEXT, overage_cap_mb=20 * 1024)
    line = rule.line
    Line.objects.filter(pk=line.pk).update(data_remaining_bytes=0, overage_bytes=15 * GB)
    add_card()
    now = timezone.now()
    renewal = services.charge_renewal(renewal_id=claimed(rule, now).pk, now=now)

    line.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.amount_minor == 9800
    assert (line.data_remaining_bytes, line.overage_bytes) == (0, 5 * GB)
    assert beyond_zero(line, granted=10 * GB, billed=0) == 15 * GB

