"""Issue "Money seams": every case seen on main is a regression test here, against the real
localstripe. What the processor holds is read from its own list of PaymentIntents, not our tables.
The design as built is docs/money.md."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Line
from payments import gateways
from payments.models import Charge
from renewals.models import Renewal, RenewalRule
from renewals.services import charging, claims, dispatcher, outcomes, reconciliation, rules, suspension, triggers
from renewals.services import pay_now as pay_now_services
from tests.builders import GB, make_package

from .conftest import payment_intents_for
from .test_charging import DECLINING_CARD, claimed


def declined_once(rule, add_card) -> Renewal:
    """A renewal of `rule` whose first off-session attempt was declined: waiting for its retry."""
    add_card(DECLINING_CARD)
    now = timezone.now()
    renewal = charging.charge_renewal(renewal_id=claimed(rule, now).pk, now=now)
    assert renewal.status == Renewal.Status.RETRY_SCHEDULED and renewal.failures == 1
    return renewal


def retried(renewal) -> Renewal:
    """The scheduled retry, run by the dispatcher at its time."""
    with time_machine.travel(renewal.next_attempt_at + timedelta(seconds=1), tick=False):
        now = timezone.now()
        assert claims.claim_due_renewals(now=now, renewal_ids=[renewal.pk]) == [renewal.pk]
        return charging.charge_renewal(renewal_id=renewal.pk, now=now)


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
        (9800, "cny", "requires_payment_method"),
        (9800, "cny", "succeeded"),
    ]
    paid = Charge.objects.get(renewal=renewal, status=Charge.Status.SUCCEEDED)
    assert (paid.amount_minor, paid.currency, paid.package_id) == (9800, "CNY", bought.pk)
    line = Line.objects.get(pk=rule.line_id)
    assert line.package_id == bought.pk
    assert line.data_remaining_bytes == data_before + bought.data_allowance_bytes
    # The rule's new package is the next cycle's.
    following = triggers.open_renewal(rule=RenewalRule.objects.get(pk=rule.pk), now=timezone.now(), trigger="expiry")
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
    from partner.services.usage import UsageInput, ingest_usage

    record = UsageInput(
        index=0,
        partner_record_id=f"use-{line.pk}-{now.timestamp()}-{nbytes}",
        iccid=line.iccid,
        bytes=nbytes,
        start=now - timedelta(minutes=10),
        end=now,
    )
    ingest_usage(records=[record], now=now)


def beyond_zero(line, *, granted: int, billed: int) -> int:
    """Conservation, read off the line: data used beyond zero = granted + billed + still owed,
    `granted` being the part of a new allowance spent on it."""
    return granted + billed + line.overage_bytes


def test_overage_used_while_a_renewal_waits_for_3ds_is_still_owed_after_it_is_paid(rule, policy, add_card):
    """Case 5: overage used after the renewal was priced was cleared unbilled."""
    from payments.services import on_session
    from tests.payments.conftest import authenticate_as_browser

    from .test_charging import THREE_D_SECURE_CARD

    policy.overage_price_per_gb_minor = 1000
    policy.save()
    RenewalRule.objects.filter(pk=rule.pk).update(
        overage_policy=RenewalRule.OveragePolicy.BILL_OVERAGE, overage_cap_mb=4096
    )
    rule.refresh_from_db()
    line = rule.line
    Line.objects.filter(pk=line.pk).update(data_remaining_bytes=0, overage_bytes=GB)
    add_card(THREE_D_SECURE_CARD)
    now = timezone.now()
    renewal = charging.charge_renewal(renewal_id=claimed(rule, now).pk, now=now)
    assert renewal.status == Renewal.Status.REQUIRES_ACTION
    assert (renewal.amount_minor, renewal.overage_billed_bytes) == (9800 + 1000, GB)
    use(line, 512 * 1024**2, now)  # service goes on while the customer is at the bank's page
    [intent] = payment_intents_for(renewal)
    assert authenticate_as_browser(intent["id"], intent["client_secret"]).status_code == 200
    on_session.complete_authentication(user=line.owner, charge_id=Charge.objects.get(renewal=renewal).pk)

    renewal.refresh_from_db()
    line.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.overage_billed_bytes == GB
    granted = rule.package.data_allowance_bytes - line.data_remaining_bytes
    assert beyond_zero(line, granted=granted, billed=GB) == GB + 512 * 1024**2
    assert [(pi["amount"], pi["status"]) for pi in payment_intents_for(renewal)] == [(10800, "succeeded")]


def test_deduct_from_next_keeps_overage_beyond_the_new_allowance_owed(rule, add_card):
    """Case 5: with "deduct from next", 15 GB of overage and a 10 GB package left 0 and owed 0."""
    RenewalRule.objects.filter(pk=rule.pk).update(
        overage_policy=RenewalRule.OveragePolicy.DEDUCT_FROM_NEXT, overage_cap_mb=20 * 1024
    )
    line = rule.line
    Line.objects.filter(pk=line.pk).update(data_remaining_bytes=0, overage_bytes=15 * GB)
    add_card()
    now = timezone.now()
    renewal = charging.charge_renewal(renewal_id=claimed(rule, now).pk, now=now)

    line.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.amount_minor == 9800
    assert (line.data_remaining_bytes, line.overage_bytes) == (0, 5 * GB)
    assert beyond_zero(line, granted=10 * GB, billed=0) == 15 * GB


def test_overage_a_purchase_settles_while_a_renewal_has_it_frozen_is_paid_for_once(rule, policy, add_card):
    """Case 14: the purchase took the overage from its allowance, then the renewal charged for it
    too (its frozen terms): the customer paid for the same bytes twice."""
    from accounts.services import apply_package

    policy.overage_price_per_gb_minor = 1000
    policy.save()
    RenewalRule.objects.filter(pk=rule.pk).update(
        overage_policy=RenewalRule.OveragePolicy.BILL_OVERAGE, overage_cap_mb=4096
    )
    line = rule.line
    Line.objects.filter(pk=line.pk).update(data_remaining_bytes=0, overage_bytes=GB)
    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    assert (renewal.amount_minor, renewal.overage_billed_bytes) == (9800 + 1000, GB)
    top_up = make_package(data_allowance_bytes=2 * GB, price_minor=500, currency="EUR")
    apply_package(line=line, package=top_up, now=now)  # a purchase's success, before the renewal's attempt
    line.refresh_from_db()
    assert (line.data_remaining_bytes, line.overage_bytes) == (GB, 0)  # its allowance paid for the overage

    renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)

    line.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert [(pi["amount"], pi["status"]) for pi in payment_intents_for(renewal)] == [
        (10800, "succeeded")
    ]  # frozen terms
    # The gigabyte the renewal billed goes back to the allowance: used = granted + billed + owed.
    assert (line.data_remaining_bytes, line.overage_bytes) == (2 * GB + rule.package.data_allowance_bytes, 0)
    assert (
        beyond_zero(line, granted=2 * GB + rule.package.data_allowance_bytes - line.data_remaining_bytes, billed=GB)
        == GB
    )


# --- case 4: pay-now never moves the retry cycle ------------------------------------------------


def pay_now(renewal, method) -> Charge:
    """The customer's pay-now, as the pay-now page runs it."""
    return pay_now_services.pay_renewal_now(user=renewal.line.owner, renewal=renewal, payment_method_id=method.id)


def cycle(renewal) -> tuple:
    renewal.refresh_from_db()
    return (
        renewal.status,
        renewal.failures,
        renewal.attempts,
        renewal.next_attempt_at,
        renewal.suspend_at,
        renewal.line_suspended_at,
        renewal.completed_at,
    )


def failed_cycle(rule, *, suspend_at, suspended: bool) -> Renewal:
    """A renewal whose every retry was declined, as the engine leaves it (its line suspended once
    the grace has passed)."""
    now = timezone.now()
    if suspended:
        Line.objects.filter(pk=rule.line_id).update(status=Line.Status.SUSPENDED)
    return Renewal.objects.create(
        line=rule.line,
        rule=rule,
        package=rule.package,
        amount_minor=rule.package.price_minor,
        currency=rule.package.currency,
        status=Renewal.Status.FAILED,
        attempts=3,
        failures=3,
        completed_at=now,
        suspend_at=suspend_at,
        line_suspended_at=now if suspended else None,
        last_failure_code="card_declined",
    )


def test_a_declined_pay_now_with_the_rule_off_leaves_the_failed_renewal_payable(rule, add_card):
    """Case 4: with the rule off, a declined pay-now turned the failed renewal `cancelled`
    (unpayable, line suspended for good)."""
    renewal = failed_cycle(rule, suspend_at=timezone.now(), suspended=True)
    rules.turn_off_rule(rule=rule, now=timezone.now())
    before = cycle(renewal)

    declined = pay_now(renewal, add_card(DECLINING_CARD))

    assert declined.status == Charge.Status.FAILED
    assert cycle(renewal) == before
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.SUSPENDED
    paid = pay_now(renewal, add_card("4242424242424242"))
    assert paid.status == Charge.Status.SUCCEEDED
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.resumed_line
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE


def test_a_declined_pay_now_spends_no_retry_and_suspends_nothing(rule, policy, add_card):
    """Case 4: on a scheduled retry a declined pay-now spent a retry, and with the last one spent
    suspended the line at once."""
    policy.retry_delays_minutes = [60]  # two attempts in all: the first is spent
    policy.save()
    renewal = declined_once(rule, add_card)
    before = cycle(renewal)

    declined = pay_now(renewal, add_card(DECLINING_CARD))

    assert declined.status == Charge.Status.FAILED
    assert cycle(renewal) == before
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE
    # The retry runs at its time, as scheduled.
    with time_machine.travel(before[3] - timedelta(seconds=1), tick=False):
        assert claims.claim_due_renewals(now=timezone.now(), renewal_ids=[renewal.pk]) == []
    assert retried(renewal).status == Renewal.Status.FAILED


def test_a_hard_declined_pay_now_during_the_grace_period_still_suspends_the_line_when_grace_ends(
    rule, policy, add_card
):
    """Case 4: during the grace period a hard-declined pay-now moved the renewal to `awaiting_method`,
    and the line was never suspended."""
    policy.hard_decline_codes = ["card_declined"]
    policy.save()
    grace_ends = timezone.now() + timedelta(hours=12)
    renewal = failed_cycle(rule, suspend_at=grace_ends, suspended=False)
    before = cycle(renewal)

    declined = pay_now(renewal, add_card(DECLINING_CARD))

    assert declined.status == Charge.Status.FAILED and declined.decline_kind == Charge.DeclineKind.HARD
    assert cycle(renewal) == before
    assert suspension.suspend_overdue_lines(now=grace_ends - timedelta(seconds=1)) == []
    assert suspension.suspend_overdue_lines(now=grace_ends) == [renewal.pk]
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.SUSPENDED


def test_a_retry_due_while_a_pay_now_waits_at_the_bank_withdraws_it_first_and_spends_nothing_for_it(rule, add_card):
    """Pay-now leaves the cycle alone, so its retry still comes: it withdraws the customer's open
    3-D Secure pay-now before charging, so the two can never both take the money."""
    from .test_charging import THREE_D_SECURE_CARD

    renewal = declined_once(rule, add_card)
    waiting = pay_now(renewal, add_card(THREE_D_SECURE_CARD))
    assert waiting.status == Charge.Status.REQUIRES_ACTION
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.RETRY_SCHEDULED
    add_card("4242424242424242")

    renewal = retried(renewal)

    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.failures == 1
    waiting.refresh_from_db()
    assert (waiting.status, waiting.failure_code) == (Charge.Status.FAILED, "superseded")
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["requires_payment_method", "canceled", "succeeded"]


def test_a_failed_renewal_whose_line_has_a_newer_cycle_cannot_be_paid_now(rule, add_card):
    """Without this, paying the older cycle and the newer one would apply two packages."""
    from payments.services import errors

    older = failed_cycle(rule, suspend_at=timezone.now(), suspended=False)
    newer = triggers.open_renewal(rule=rule, now=timezone.now(), trigger="data", after_method_change=True)
    assert newer is not None

    with pytest.raises(errors.NotPayable):
        pay_now(older, add_card("4242424242424242"))
    assert not Charge.objects.filter(renewal=older).exists()
    assert payment_intents_for(older) == []


def test_turning_the_rule_off_during_a_pay_now_cancels_the_open_renewal_once_the_pay_now_is_declined(
    rule, add_card, customer
):
    """The rule going off waits for the pay-now at the processor, then wins."""
    from payments import gateways

    renewal = declined_once(rule, add_card)
    card = add_card(DECLINING_CARD)
    charge = pay_now_services.start_pay_now(renewal_id=renewal.pk, payment_method_id=card.id, now=timezone.now())
    rules.turn_off_rule(rule=rule, now=timezone.now())
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.RETRY_SCHEDULED  # left to the payment in flight

    outcome = gateways.charge_on_session(
        charge=charge, customer_id=gateways.ensure_customer(customer).id, payment_method_id=card.id
    )
    renewal = outcomes.record_charge_outcome(charge_id=charge.pk, outcome=outcome, now=timezone.now())

    assert renewal.status == Renewal.Status.CANCELLED and renewal.failures == 1


# --- case 3: a pay-now that supersedes an open 3-D Secure payment ------------------------------


def test_a_3ds_payment_completed_in_another_tab_while_pay_now_withdraws_it_is_recorded_and_nothing_is_charged_again(
    rule, add_card, settings
):
    """Case 3: pay-now read the older 3-D Secure payment as still open, the customer completed it
    in another tab, our cancel was refused and the refusal swallowed: the new pay-now charged again."""
    import requests

    from payments import gateways
    from tests.payments.write_proxy import RecordingProxy

    from .test_authentication import waiting_for_3ds

    renewal = waiting_for_3ds(rule, add_card)
    [older] = payment_intents_for(renewal)
    good = add_card("4242424242424242")
    data_before = Line.objects.get(pk=rule.line_id).data_remaining_bytes

    def customer_completes_it_first(method, path):
        if method == "POST" and path == f"/v1/payment_intents/{older['id']}/cancel":
            requests.post(
                f"{proxy.upstream}/v1/payment_intents/{older['id']}/_authenticate?success=true",
                json={"key": settings.STRIPE_PUBLISHABLE_KEY, "client_secret": older["client_secret"]},
                timeout=10,
            )

    with RecordingProxy(settings.STRIPE_API_BASE, before=customer_completes_it_first) as proxy:
        settings.STRIPE_API_BASE = proxy.url
        gateways.configure()
        try:
            charge = pay_now(renewal, good)
        finally:
            settings.STRIPE_API_BASE = proxy.upstream
            gateways.configure()

    assert charge.payment_intent_id == older["id"] and charge.status == Charge.Status.SUCCEEDED
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["succeeded"]
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert Line.objects.get(pk=rule.line_id).data_remaining_bytes == data_before + rule.package.data_allowance_bytes


# --- case 8: an outcome for a charge we had closed is never dropped ----------------------------


def slow_first_attempt(rule, add_card):
    """The first attempt's request is slow to reach the processor: reconciliation finds no
    PaymentIntent for it and closes it as never sent, which spends no retry: the cycle is due again
    at once (docs/precedence.md). Returns (renewal, its
    charge, a function sending the slow request now, as the worker finally does)."""
    from payments import gateways

    add_card()
    now = timezone.now()
    renewal = claimed(rule, now)
    customer_id = gateways.ensure_customer(rule.line.owner).id
    pm_id = gateways.default_payment_method_id(rule.line.owner)
    prepared = charging.prepare_charge(renewal_id=renewal.pk, customer_id=customer_id, payment_method_id=pm_id, now=now)
    reconciliation.reconcile_charge(charge_id=prepared.charge.pk, now=now + timedelta(minutes=11))
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.DUE and renewal.failures == 0 and renewal.next_attempt_at is not None
    assert Charge.objects.get(pk=prepared.charge.pk).failure_code == "not_sent"

    def arrives():
        outcome = gateways.charge_off_session(charge=prepared.charge, customer_id=customer_id, payment_method_id=pm_id)
        assert outcome.succeeded
        return outcomes.record_charge_outcome(charge_id=prepared.charge.pk, outcome=outcome, now=timezone.now())

    return renewal, prepared.charge, arrives


def test_a_success_for_a_charge_closed_as_never_sent_pays_its_still_open_renewal_and_no_retry_charges_again(
    rule, add_card
):
    """Case 8: the success was dropped with an INFO log and the next retry charged again."""
    renewal, charge, arrives = slow_first_attempt(rule, add_card)
    data_before = Line.objects.get(pk=rule.line_id).data_remaining_bytes

    renewal = arrives()

    assert renewal.status == Renewal.Status.SUCCEEDED
    assert Charge.objects.get(pk=charge.pk).status == Charge.Status.SUCCEEDED
    assert Line.objects.get(pk=rule.line_id).data_remaining_bytes == data_before + rule.package.data_allowance_bytes
    assert dispatcher.run_dispatcher(now=timezone.now() + timedelta(days=2), enqueue=False).claimed == []
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["succeeded"]


def test_a_success_after_the_cycle_was_paid_by_a_retry_is_refunded_once_with_an_alert(
    rule, add_card, django_capture_on_commit_callbacks
):
    """Case 8: once the retry had paid the cycle, the late success was dropped: money kept, no trace."""
    import stripe
    from django.conf import settings

    from payments.services import recording
    from payments.services import refunds as payments_refunds
    from renewals.models import Alert

    renewal, charge, arrives = slow_first_attempt(rule, add_card)
    assert retried(renewal).status == Renewal.Status.SUCCEEDED
    data_after_renewal = Line.objects.get(pk=rule.line_id).data_remaining_bytes

    with django_capture_on_commit_callbacks(execute=True):
        renewal = arrives()
    with django_capture_on_commit_callbacks(execute=True):  # a webhook for the same success, later
        arrives_again = recording.record_outcome(
            charge_id=charge.pk,
            outcome=gateways.outcome_from_payment_intent(
                stripe.PaymentIntent.retrieve(
                    Charge.objects.get(pk=charge.pk).payment_intent_id, api_key=settings.STRIPE_SECRET_KEY
                )
            ),
        )
    assert payments_refunds.refund_due_charges() == []

    late = Charge.objects.get(pk=charge.pk)
    assert arrives_again.status == late.status == Charge.Status.REFUNDED and late.refunded_minor == late.amount_minor
    refunds = list(
        stripe.Refund.list(payment_intent=late.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY).auto_paging_iter()
    )
    assert [refund["amount"] for refund in refunds] == [late.amount_minor]
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert Charge.objects.filter(renewal=renewal, status=Charge.Status.SUCCEEDED).count() == 1
    assert Line.objects.get(pk=rule.line_id).data_remaining_bytes == data_after_renewal  # applied once
    assert Alert.objects.filter(line_id=rule.line_id, kind=Alert.Kind.PAID_AFTER_CLOSED, renewal=renewal).exists()


def test_a_refund_the_processor_made_before_we_recorded_it_is_not_made_twice(rule, add_card):
    import stripe
    from django.conf import settings

    from payments.services import refunds as payments_refunds

    renewal, charge, arrives = slow_first_attempt(rule, add_card)
    assert retried(renewal).status == Renewal.Status.SUCCEEDED
    arrives()  # its after-commit refund never ran: the process died
    late = Charge.objects.get(pk=charge.pk)
    assert late.status == Charge.Status.REFUND_DUE
    # ... after the processor had made the refund.
    stripe.Refund.create(
        payment_intent=late.payment_intent_id, amount=late.amount_minor, api_key=settings.STRIPE_SECRET_KEY
    )

    assert payments_refunds.refund_due_charges() == [late.pk]

    late.refresh_from_db()
    assert late.status == Charge.Status.REFUNDED and late.refunded_minor == late.amount_minor
    refunds = list(
        stripe.Refund.list(payment_intent=late.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY).auto_paging_iter()
    )
    assert len(refunds) == 1


def test_a_purchase_closed_as_never_sent_that_succeeds_later_is_refunded_not_applied(
    customer, line, package, add_card, django_capture_on_commit_callbacks
):
    """Case 8, for a purchase: the customer was told it failed (and may have bought again)."""
    import stripe
    from django.conf import settings

    from payments import gateways
    from payments.services import on_session, recording
    from tests.builders import make_charge

    method = add_card()
    charge = make_charge(
        user=customer, line=line, package=package, payment_method_id=method.id, sent_at=timezone.now(), on_session=True
    )
    assert on_session.reconcile(charge=charge, not_found_means_not_sent=True).status == Charge.Status.FAILED
    data_before = Line.objects.get(pk=line.pk).data_remaining_bytes

    outcome = gateways.charge_on_session(
        charge=charge, customer_id=gateways.ensure_customer(customer).id, payment_method_id=method.id
    )
    with django_capture_on_commit_callbacks(execute=True):
        recording.record_outcome(charge_id=charge.pk, outcome=outcome)

    charge.refresh_from_db()
    assert charge.status == Charge.Status.REFUNDED and charge.refunded_minor == charge.amount_minor
    refunds = list(
        stripe.Refund.list(
            payment_intent=charge.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY
        ).auto_paging_iter()
    )
    assert [refund["amount"] for refund in refunds] == [charge.amount_minor]
    assert Line.objects.get(pk=line.pk).data_remaining_bytes == data_before
