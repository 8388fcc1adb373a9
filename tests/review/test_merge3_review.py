"""Adversarial review: money-terms + money-precedence + line-life merged (scratch merge). Two
records of "who suspended this line" disagree: line-life's Line.suspended_by_operator field and
money-precedence's reading of the history rows (renewals.services.precedence.suspended_by_operator)."""

from django.utils import timezone

from accounts.models import Line
from payments.models import Charge
from renewals.services import charging, claims, precedence, rules, suspension
from tests.builders import make_user
from tests.renewals.test_money_seams import failed_cycle


def test_once_an_operator_suspends_a_line_already_suspended_for_non_payment_no_renewal_charges_it_or_claims_to_restore_it(
    rule, add_card, customer
):
    """line-life's suspend action on a line the engine suspended for non-payment sets only the
    `suspended_by_operator` field (its history row has no `status`); money-precedence looks for
    the latest history row whose `after.status` is suspended, finds the engine's, and treats the
    line as merely unpaid: a new card charges the renewal off-session, the money is taken, and
    the line stays suspended (line-life's apply_package respects the field) while the renewal
    says it resumed the line."""
    from accounts.services.line_status import suspend_line

    operator = make_user(email="operator@example.com", is_staff=True)
    renewal = failed_cycle(rule, suspend_at=timezone.now(), suspended=False)
    assert suspension.suspend_overdue_lines(now=timezone.now()) == [renewal.pk]  # the engine's suspension
    assert suspend_line(line_id=rule.line_id, reason="fraud check", actor=operator, now=timezone.now())
    assert Line.objects.get(pk=rule.line_id).suspended_by_operator  # line-life's record of it

    add_card("4242424242424242")  # the customer's new default card
    now = timezone.now()
    for renewal_id in rules.payment_method_changed(user=customer, now=now):
        claims.claim_due_renewals(now=now, renewal_ids=[renewal_id])
        charging.charge_renewal(renewal_id=renewal_id, now=now)

    renewal.refresh_from_db()
    assert not Charge.objects.filter(renewal=renewal, status=Charge.Status.SUCCEEDED).exists(), (
        f"charged for an operator-suspended line: renewal {renewal.status}, resumed_line={renewal.resumed_line}, "
        f"line {Line.objects.get(pk=rule.line_id).status}"
    )
    assert not renewal.resumed_line
    assert precedence.suspended_by_operator(Line.objects.get(pk=rule.line_id))
