"""Adversarial review of branch money-precedence: each test states the expected behaviour and
fails on the branch as reviewed."""

from django.utils import timezone

from accounts.models import Line
from payments.models import Charge
from renewals.models import Renewal, RenewalRule
from renewals.services import charging, dispatcher, precedence
from tests.renewals.test_charging import claimed


def test_a_renewal_of_the_old_owners_rule_never_charges_the_new_owners_card(rule, add_card, other_customer):
    """One customer never touches another's money. A renewal of Alice's rule is claimed; the
    operator gives the line to Mallory (the line form). The rule is turned off only by an
    after-commit hook (renewals.signals): until it runs (or forever, if the process dies between
    the commit and the hook; no dispatcher sweep repairs it, unlike termination), the charge step
    reads the line's *current* owner and charges Mallory's default card for Alice's rule."""
    from payments import gateways
    from tests.payments.conftest import create_card

    add_card()  # Alice's default card
    mallory = gateways.ensure_customer(other_customer)
    pm = gateways.attach_payment_method(customer_id=mallory.id, payment_method_id=create_card("4242424242424242"))
    gateways.set_default_payment_method(customer_id=mallory.id, payment_method_id=pm.id)
    now = timezone.now()
    renewal = claimed(rule, now)

    given = Line.objects.get(pk=rule.line_id)
    given.owner = other_customer
    given.save()  # committed; its after-commit follow-up has not run yet
    charging.charge_renewal(renewal_id=renewal.pk, now=now)

    assert not Charge.objects.filter(user=other_customer).exists()
    assert not Charge.objects.filter(payment_method_id=pm.id).exists()
    renewal.refresh_from_db()
    assert renewal.status != Renewal.Status.SUCCEEDED
    assert renewal.status == Renewal.Status.CANCELLED and renewal.last_failure_message == precedence.LINE_OWNER_CHANGED


def test_a_rule_whose_owner_change_follow_up_was_lost_is_turned_off_by_the_next_dispatcher_tick_and_charges_nobody(
    rule, add_card, other_customer
):
    """The after-commit hook that turns the old owner's rule off is lost (the process died): the
    dispatcher's tick repairs it, and no renewal opens for the new owner meanwhile."""
    from payments import gateways
    from tests.payments.conftest import create_card

    add_card()
    mallory = gateways.ensure_customer(other_customer)
    pm = gateways.attach_payment_method(customer_id=mallory.id, payment_method_id=create_card("4242424242424242"))
    gateways.set_default_payment_method(customer_id=mallory.id, payment_method_id=pm.id)
    given = Line.objects.get(pk=rule.line_id)
    given.owner = other_customer
    given.save()  # committed; its after-commit follow-up never runs

    now = timezone.now()
    report = dispatcher.run_dispatcher(now=now, enqueue=False)
    for renewal_id in report.claimed:
        charging.charge_renewal(renewal_id=renewal_id, now=now)

    assert RenewalRule.objects.get(pk=rule.pk).enabled is False
    assert not Charge.objects.filter(line_id=rule.line_id).exists()
