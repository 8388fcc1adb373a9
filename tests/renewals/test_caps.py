"""Caps and fees in integer minor units of one currency: the monthly spend cap counts only money in
the rule's currency, over the customer's own month (their time zone, not UTC's), and the overage
fee never goes through a float."""

from datetime import UTC, datetime, timedelta

from payments.models import Charge
from renewals.models import Alert, Renewal
from renewals.services import triggers
from tests.builders import GB


def paid_renewal(rule, *, amount_minor: int, currency: str, at: datetime) -> Renewal:
    """A renewal of the line already paid at `at`, as the ledger holds it."""
    done = Renewal.objects.create(
        line=rule.line,
        rule=rule,
        package=rule.package,
        amount_minor=amount_minor,
        currency=currency,
        status=Renewal.Status.SUCCEEDED,
        completed_at=at,
    )
    Charge.objects.create(
        user=rule.line.owner,
        line=rule.line,
        renewal=done,
        attempt=1,
        purpose=Charge.Purpose.RENEWAL,
        amount_minor=amount_minor,
        currency=currency,
        status=Charge.Status.SUCCEEDED,
        idempotency_key=f"paid-{done.pk}",
        settled_at=at,
    )
    return done


def test_money_taken_in_another_currency_does_not_count_against_the_cap(rule):
    rule.monthly_spend_cap_minor = 10000  # CNY, the rule's package currency: one renewal of 9800
    rule.max_renewals_per_day = 5
    rule.save()
    now = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
    paid_renewal(rule, amount_minor=5000, currency="USD", at=now - timedelta(days=3))  # before the package changed

    opened = triggers.open_renewal(rule=rule, now=now, trigger="data")

    assert opened is not None and (opened.amount_minor, opened.currency) == (9800, "CNY")
    assert not Alert.objects.filter(line=rule.line, kind=Alert.Kind.SPEND_CAP_REACHED).exists()


def test_a_shanghai_customers_first_of_december_holds_one_renewal_under_a_one_renewal_cap(rule, customer):
    customer.time_zone = "Asia/Shanghai"
    customer.save()
    rule.monthly_spend_cap_minor = 9800  # exactly one renewal a month
    rule.max_renewals_per_day = 5
    rule.save()
    # 02:00 on 1 December in Shanghai is still 30 November in UTC.
    paid_renewal(rule, amount_minor=9800, currency="CNY", at=datetime(2026, 11, 30, 18, 0, tzinfo=UTC))
    same_local_day = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # 18:00 on 1 December in Shanghai

    assert triggers.open_renewal(rule=rule, now=same_local_day, trigger="data") is None
    assert Alert.objects.filter(line=rule.line, kind=Alert.Kind.SPEND_CAP_REACHED).exists()

    # Their January is a new month: 00:30 on 1 January in Shanghai (16:30 UTC on 31 December).
    assert triggers.open_renewal(rule=rule, now=datetime(2026, 12, 31, 16, 30, tzinfo=UTC), trigger="data") is not None


def test_the_overage_fee_is_rounded_up_in_integers_not_through_a_float(policy):
    policy.overage_price_per_gb_minor = 199999
    # 42.38 GB: the exact fee is 8476830 and 1/1073741824 minor units, so 8476831 rounded up; a float
    # division loses the fraction and bills one unit short.
    overage = 45509862079
    assert overage * 199999 % GB != 0
    assert triggers.overage_fee_minor(overage_bytes=overage, policy=policy) == overage * 199999 // GB + 1
    assert triggers.overage_fee_minor(overage_bytes=GB, policy=policy) == 199999  # exact stays exact
    assert triggers.overage_fee_minor(overage_bytes=1, policy=policy) == 1  # never zero for real overage
    assert triggers.overage_fee_minor(overage_bytes=0, policy=policy) == 0
