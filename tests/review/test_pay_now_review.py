"""Review: pay-now of a failed renewal of a terminated line (suspected by the reviewer)."""

from django.utils import timezone

from accounts.models import Line
from payments.models import Charge


def test_a_failed_renewal_of_a_terminated_line_cannot_be_paid_now(rule, add_card):
    """Money paid for a terminated line would only be refunded: pay-now refuses it, charging nothing."""
    import pytest

    from payments.services import errors
    from tests.renewals.test_money_seams import failed_cycle, pay_now

    renewal = failed_cycle(rule, suspend_at=timezone.now(), suspended=True)
    Line.objects.filter(pk=rule.line_id).update(status=Line.Status.TERMINATED)
    with pytest.raises(errors.NotPayable) as refused:
        pay_now(renewal, add_card("4242424242424242"))
    assert refused.value.code == "line_terminated"
    assert not Charge.objects.filter(renewal=renewal).exists()
