"""A line that lost its owner while a cycle without a payer was open: the attempt is refused in the
engine's own words, not by the database's NOT NULL on the charge's customer (found by mypy:
`Charge.user_id` got the line's `owner_id`, which may be None)."""

import pytest
from django.utils import timezone

from payments.models import Charge
from renewals.models import Renewal
from renewals.services import charging, pay_now
from renewals.services._base import RenewalNotPayable
from tests.builders import make_line, make_renewal, make_rule


@pytest.fixture
def ownerless_line(package, policy):
    return make_line(owner=None, package=package)


def test_an_attempt_for_a_line_without_an_owner_cancels_the_renewal_and_charges_nobody(ownerless_line, package):
    rule = make_rule(line=ownerless_line, package=package)
    renewal = make_renewal(line=ownerless_line, package=package, rule=rule, status=Renewal.Status.CHARGING)

    prepared = charging.prepare_charge(
        renewal_id=renewal.pk, customer_id="cus_unused", payment_method_id="pm_unused", now=timezone.now()
    )

    assert prepared is None
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED
    assert renewal.last_failure_message == "line_has_no_owner"
    assert not Charge.objects.filter(renewal=renewal).exists()


def test_pay_now_for_a_line_without_an_owner_is_refused_as_not_payable(ownerless_line, package):
    renewal = make_renewal(line=ownerless_line, package=package, status=Renewal.Status.FAILED)

    with pytest.raises(RenewalNotPayable, match="line_has_no_owner"):
        pay_now.start_pay_now(renewal_id=renewal.pk, payment_method_id="pm_unused", now=timezone.now())

    assert not Charge.objects.filter(renewal=renewal).exists()
