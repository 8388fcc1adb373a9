"""Reconciliation of attempts whose outcome we do not know, against the real localstripe: each pending
charge has its own next look-up by payment type (a card minutes after the attempt, a SEPA debit
daily), taken earliest due first, so debits in flight never hide a card attempt that timed out; a
renewal never sits in `charging` past a bound without an alert; and an attempt the processor never
received spends no retry and suspends nobody."""

from datetime import timedelta

from django.utils import timezone
from djstripe.models import PaymentMethod

from accounts.models import Line
from payments import gateways
from payments.models import Charge
from renewals.models import Alert, Renewal
from renewals.services import charging, claims, dispatcher, triggers
from tests.builders import make_line, make_rule
from tests.payments.test_purchase import bind_sepa


def _in_flight(rule, *, customer, method_id: str, sent_at) -> Charge:
    """A renewal whose attempt was written and (perhaps) sent, then the worker went away."""
    renewal = triggers.open_renewal(rule=rule, now=sent_at, trigger="data")
    assert claims.claim_due_renewals(now=sent_at, renewal_ids=[renewal.pk]) == [renewal.pk]
    prepared = charging.prepare_charge(
        renewal_id=renewal.pk,
        customer_id=gateways.ensure_customer(customer).id,
        payment_method_id=method_id,
        now=sent_at,
    )
    return prepared.charge


def test_debits_in_flight_for_days_do_not_hide_a_card_attempt_that_timed_out(
    customer, customer_client, package, policy, add_card, settings
):
    settings.RENEWALS_RECONCILE_PER_TICK = 3
    card = add_card()
    bind_sepa(customer_client, "DE89370400440532013000")
    sepa = PaymentMethod.objects.get(customer__subscriber=customer, stripe_data__type="sepa_debit")
    now = timezone.now()
    debits = []
    for _ in range(4):  # more debits in flight than one tick looks up
        line = make_line(owner=customer, data_remaining_bytes=0)
        rule = make_rule(line=line, package=package, payment_method_id=sepa.id)
        debits.append(_in_flight(rule, customer=customer, method_id=sepa.id, sent_at=now - timedelta(hours=2)))
    card_line = make_line(owner=customer, data_remaining_bytes=0)
    card_rule = make_rule(line=card_line, package=package, payment_method_id=card.id)
    charge = _in_flight(card_rule, customer=customer, method_id=card.id, sent_at=now - timedelta(minutes=15))
    # The processor took the card payment; its answer was lost (a time-out).
    assert gateways.charge_off_session(
        charge=charge, customer_id=gateways.ensure_customer(customer).id, payment_method_id=card.id
    ).succeeded

    dispatcher.run_dispatcher(now=now, enqueue=False)

    assert Renewal.objects.get(pk=charge.renewal_id).status == Renewal.Status.SUCCEEDED
    assert Charge.objects.get(pk=charge.pk).status == Charge.Status.SUCCEEDED
    # The debits are looked up on their own, daily, schedule.
    assert set(Charge.objects.filter(pk__in=[d.pk for d in debits]).values_list("status", flat=True)) == {
        Charge.Status.PENDING
    }


def test_an_attempt_pending_past_its_bound_raises_an_alert_while_the_processor_cannot_be_asked(
    rule, add_card, customer, settings
):
    card = add_card()
    now = timezone.now()
    charge = _in_flight(rule, customer=customer, method_id=card.id, sent_at=now - timedelta(hours=3))
    api_base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # a closed port: nobody can tell us what happened
    gateways.configure()
    try:
        dispatcher.run_dispatcher(now=now, enqueue=False)
    finally:
        settings.STRIPE_API_BASE = api_base
        gateways.configure()

    assert Renewal.objects.get(pk=charge.renewal_id).status == Renewal.Status.CHARGING
    alert = Alert.objects.get(line_id=rule.line_id, kind=Alert.Kind.UNRECONCILED_CHARGE, resolved_at__isnull=True)
    assert f"charge {charge.pk}" in alert.message


def test_an_attempt_the_processor_never_received_spends_no_retry_and_suspends_nobody(rule, policy, add_card, customer):
    policy.grace_hours = 0
    policy.save()
    card = add_card()
    now = timezone.now()
    charge = _in_flight(rule, customer=customer, method_id=card.id, sent_at=now - timedelta(minutes=15))
    # One decline short of a failed cycle: a "not sent" counted as a decline would suspend the line.
    Renewal.objects.filter(pk=charge.renewal_id).update(failures=policy.max_failures - 1)

    report = dispatcher.run_dispatcher(now=now, enqueue=False)
    assert Charge.objects.get(pk=charge.pk).failure_code == "not_sent"
    renewal = Renewal.objects.get(pk=charge.renewal_id)
    assert renewal.failures == policy.max_failures - 1
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE

    # Due again at once: the same tick's claim takes it, and the card pays.
    assert report.claimed == [renewal.pk]
    renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)
    assert renewal.status == Renewal.Status.SUCCEEDED and renewal.failures == policy.max_failures - 1
    assert Line.objects.get(pk=rule.line_id).status == Line.Status.ACTIVE
