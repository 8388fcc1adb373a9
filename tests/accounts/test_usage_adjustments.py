"""An operator's usage correction (docs/usage.md, "Operator corrections"): a new, signed row applied
by the same accounting as the partner's usage, with its network command and history in the same
transaction; it never gives back more than the period used, and overage stays conserved."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import ChangeRecord, Line, NetworkCommand, UsageAdjustment, UsageRecord
from accounts.services import apply_package
from accounts.services.line_status import suspend_line
from partner.services.adjustments import AdjustmentRefused, adjust_usage, preview_adjustment
from partner.services.usage import UsageInput, ingest_usage
from renewals.models import Renewal, RenewalRule
from tests.builders import GB, MB, make_line, make_rule, make_user

Policy = RenewalRule.OveragePolicy


@pytest.fixture
def operator(db):
    return make_user(email="finance@ops.example.com", is_staff=True)


def use(line, *sizes, prefix="u"):
    end = timezone.now()
    ingest_usage(
        records=[
            UsageInput(
                index=i,
                partner_record_id=f"{prefix}-{line.pk}-{i}",
                iccid=line.iccid,
                bytes=size,
                start=end - timedelta(minutes=5),
                end=end,
            )
            for i, size in enumerate(sizes)
        ]
    )
    line.refresh_from_db()
    return line


def commands(line):
    return list(NetworkCommand.objects.filter(line=line).order_by("id").values_list("command", flat=True))


def test_a_credit_on_an_out_of_data_line_restores_data_and_writes_unblock_data_in_the_same_transaction(
    customer, package, operator
):
    line = use(make_line(owner=customer, package=package, data_remaining_bytes=100 * MB, data_used_bytes=0), 400 * MB)
    assert (line.status, line.data_blocked, commands(line)) == (Line.Status.DATA_EXHAUSTED, True, ["block_data"])

    with transaction.atomic():
        adjust_usage(
            line_id=line.pk,
            bytes=-300 * MB,
            reason="partner reported the same session twice",
            actor=operator,
            now=timezone.now(),
        )
        # Inside the one transaction: the data is back and the command is written.
        line.refresh_from_db()
        assert (line.status, line.data_blocked, line.data_remaining_bytes) == (Line.Status.ACTIVE, False, 300 * MB)
        assert commands(line) == ["block_data", "unblock_data"]
    assert line.data_used_bytes == 100 * MB
    assert NetworkCommand.objects.get(line=line, command="unblock_data").reason == "usage corrected by an operator"


def test_a_failed_correction_writes_nothing(customer, package, operator):
    line = use(make_line(owner=customer, package=package, data_remaining_bytes=100 * MB, data_used_bytes=0), 400 * MB)
    with pytest.raises(AdjustmentRefused):
        adjust_usage(line_id=line.pk, bytes=-401 * MB, reason="goodwill", actor=operator, now=timezone.now())
    line.refresh_from_db()
    assert (line.status, line.data_remaining_bytes, commands(line)) == (Line.Status.DATA_EXHAUSTED, 0, ["block_data"])
    assert not UsageAdjustment.objects.exists()


def test_a_credit_cannot_exceed_the_periods_usage(customer, package, operator):
    line = make_line(
        owner=customer,
        package=package,
        data_remaining_bytes=GB,
        data_used_bytes=0,
        package_started_at=timezone.now() - timedelta(days=1),
    )
    # Usage of an earlier package (charged to nothing) does not count; this package's does.
    ingest_usage(
        records=[
            UsageInput(
                index=0,
                partner_record_id="old",
                iccid=line.iccid,
                bytes=500 * MB,
                start=datetime(2026, 1, 1, tzinfo=UTC),
                end=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
            )
        ]
    )
    line = use(line, 200 * MB)
    assert preview_adjustment(line_id=line.pk, bytes=-MB).period_usage == 200 * MB
    with pytest.raises(AdjustmentRefused, match="209715200"):
        adjust_usage(line_id=line.pk, bytes=-201 * MB, reason="goodwill", actor=operator, now=timezone.now())
    adjust_usage(line_id=line.pk, bytes=-150 * MB, reason="goodwill", actor=operator, now=timezone.now())
    # What was given back is no longer there to give back.
    with pytest.raises(AdjustmentRefused):
        adjust_usage(line_id=line.pk, bytes=-51 * MB, reason="goodwill", actor=operator, now=timezone.now())
    adjust_usage(line_id=line.pk, bytes=-50 * MB, reason="goodwill", actor=operator, now=timezone.now())
    line.refresh_from_db()
    assert line.data_remaining_bytes == GB


def test_a_new_package_closes_the_period_a_credit_can_give_back(customer, package, operator):
    line = use(make_line(owner=customer, package=package, data_remaining_bytes=GB, data_used_bytes=0), 300 * MB)
    apply_package(line=line, package=package, now=timezone.now() + timedelta(seconds=1))
    with pytest.raises(AdjustmentRefused):
        adjust_usage(line_id=line.pk, bytes=-MB, reason="goodwill", actor=operator, now=timezone.now())


def test_more_usage_crossing_zero_blocks_per_the_overage_policy(customer, package, operator):
    line = make_line(owner=customer, package=package, data_remaining_bytes=100 * MB, data_used_bytes=0)
    adjust_usage(line_id=line.pk, bytes=150 * MB, reason="partner missed a session", actor=operator, now=timezone.now())
    line.refresh_from_db()
    assert (line.status, line.data_blocked, line.data_remaining_bytes, line.data_used_bytes) == (
        Line.Status.DATA_EXHAUSTED,
        True,
        0,
        150 * MB,
    )
    assert commands(line) == ["block_data"]


def test_more_usage_under_a_continuing_policy_is_owed_overage_not_a_block(customer, package, operator):
    line = make_line(owner=customer, package=package, data_remaining_bytes=100 * MB, data_used_bytes=0)
    make_rule(line=line, package=package, enabled=False, overage_policy=Policy.BILL_OVERAGE, overage_cap_mb=500)
    adjust_usage(line_id=line.pk, bytes=150 * MB, reason="partner missed a session", actor=operator, now=timezone.now())
    line.refresh_from_db()
    assert (line.status, line.overage_bytes, commands(line)) == (Line.Status.ACTIVE, 50 * MB, [])


def test_more_usage_opens_a_renewal_at_its_trigger_like_usage_does(customer, package, operator):
    line = make_line(owner=customer, package=package, data_remaining_bytes=GB, data_used_bytes=0)
    make_rule(line=line, package=package, trigger_data_below_mb=500)
    adjust_usage(line_id=line.pk, bytes=600 * MB, reason="partner missed a session", actor=operator, now=timezone.now())
    assert Renewal.objects.filter(line=line).exists()


def test_a_credit_pays_back_owed_overage_first_and_bytes_stay_conserved(customer, package, operator):
    line = make_line(owner=customer, package=package, data_remaining_bytes=100 * MB, data_used_bytes=0)
    make_rule(line=line, package=package, enabled=False, overage_policy=Policy.DEDUCT_FROM_NEXT, overage_cap_mb=100)
    line = use(line, 250 * MB)  # 100 from the balance, 100 owed (the cap), 50 written off by the policy
    assert (line.status, line.overage_bytes, line.data_used_bytes) == (Line.Status.DATA_EXHAUSTED, 100 * MB, 250 * MB)

    def conserved(line, written_off=50 * MB, initial_remaining=100 * MB):
        # used - written off = consumed from the allowance + still owed (nothing granted or billed here)
        return (
            line.data_used_bytes - written_off == (initial_remaining - line.data_remaining_bytes) + line.overage_bytes
        )

    assert conserved(line)
    adjust_usage(line_id=line.pk, bytes=-60 * MB, reason="goodwill", actor=operator, now=timezone.now())
    line.refresh_from_db()
    # Owed first: 40 MB still owed, no data yet, but below the cap the policy lets service go on.
    assert (line.overage_bytes, line.data_remaining_bytes, line.status, line.data_blocked) == (
        40 * MB,
        0,
        Line.Status.ACTIVE,
        False,
    )
    assert commands(line) == ["block_data", "unblock_data"]
    assert conserved(line)
    adjust_usage(line_id=line.pk, bytes=-70 * MB, reason="goodwill", actor=operator, now=timezone.now())
    line.refresh_from_db()
    assert (line.overage_bytes, line.data_remaining_bytes) == (0, 30 * MB)
    assert conserved(line)


def test_a_correction_needs_a_reason_and_an_operator(customer, package, operator):
    line = use(make_line(owner=customer, package=package), 100 * MB)
    for reason, actor in (("", operator), ("   ", operator), ("goodwill", None)):
        with pytest.raises(AdjustmentRefused):
            adjust_usage(line_id=line.pk, bytes=-MB, reason=reason, actor=actor, now=timezone.now())
    with pytest.raises(AdjustmentRefused):
        adjust_usage(line_id=line.pk, bytes=0, reason="nothing", actor=operator, now=timezone.now())
    assert not UsageAdjustment.objects.exists()


def test_a_terminated_line_is_not_corrected(customer, package, operator):
    line = use(make_line(owner=customer, package=package), 100 * MB)
    Line.objects.filter(pk=line.pk).update(status=Line.Status.TERMINATED)
    with pytest.raises(AdjustmentRefused):
        adjust_usage(line_id=line.pk, bytes=-MB, reason="goodwill", actor=operator, now=timezone.now())


def test_the_correction_is_signed_and_in_the_history(customer, package, operator):
    line = use(make_line(owner=customer, package=package, data_remaining_bytes=GB, data_used_bytes=0), 300 * MB)
    adjustment = adjust_usage(
        line_id=line.pk, bytes=-300 * MB, reason="double report r-17", actor=operator, now=timezone.now()
    )
    assert (adjustment.operator, adjustment.reason, adjustment.bytes, adjustment.package) == (
        operator,
        "double report r-17",
        -300 * MB,
        package,
    )
    record = ChangeRecord.objects.get(
        content_type__model="line", object_id=str(line.pk), action="usage_adjusted", after__has_key="bytes"
    )
    assert (record.actor, record.reason, record.after["bytes"]) == (operator, "double report r-17", -300 * MB)
    assert (record.before["data_remaining_bytes"], record.after["data_remaining_bytes"]) == (GB - 300 * MB, GB)
    # The partner's records stay as received.
    assert list(UsageRecord.objects.filter(line=line).values_list("bytes", flat=True)) == [300 * MB]


@pytest.mark.parametrize(
    "language, text", [("en", "Correction by operator: \u2212300 MB"), ("zh-hans", "运营人员更正：\u2212300 MB")]
)
def test_the_customer_sees_the_correction_as_such_on_the_line_page(client, customer, package, operator, language, text):
    line = use(make_line(owner=customer, package=package, data_remaining_bytes=GB, data_used_bytes=0), 300 * MB)
    customer.language = language
    customer.save(update_fields=["language"])
    client.force_login(customer)
    assert "usage-corrections" not in client.get(f"/lines/{line.pk}/").content.decode()
    adjust_usage(
        line_id=line.pk, bytes=-300 * MB, reason="internal note: ticket 4711", actor=operator, now=timezone.now()
    )
    page = client.get(f"/lines/{line.pk}/").content.decode()
    assert text in page
    assert "ticket 4711" not in page and operator.email not in page  # who and why stay with the operators


def test_a_credit_on_an_operator_suspended_line_lifts_only_its_data_switch(customer, package, operator):
    line = use(make_line(owner=customer, package=package, data_remaining_bytes=100 * MB, data_used_bytes=0), 400 * MB)
    suspend_line(line_id=line.pk, reason="fraud check", actor=operator, now=timezone.now())
    adjust_usage(line_id=line.pk, bytes=-300 * MB, reason="double report", actor=operator, now=timezone.now())
    line.refresh_from_db()
    # Precedence: the operator's suspension stays; the network hears only about the data.
    assert (line.status, line.suspended_by_operator, line.data_blocked) == (Line.Status.SUSPENDED, True, False)
    assert commands(line) == ["block_data", "suspend", "unblock_data"]
