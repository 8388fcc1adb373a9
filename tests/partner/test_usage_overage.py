"""What happens at zero: the line's overage policy (renewals.RenewalRule), no rule meaning block."""

import pytest

from accounts.models import Line, NetworkCommand
from renewals.models import RenewalRule
from tests.builders import GB, MB, make_line
from tests.partner.helpers import record, signed_post

Policy = RenewalRule.OveragePolicy


def rule_for(line, package, policy, cap_mb=None):
    return RenewalRule.objects.create(
        line=line, package=package, overage_policy=policy, overage_cap_mb=cap_mb, enabled=False
    )


def send(client, line, *sizes, prefix="r"):
    body = {"records": [record(line, id=f"{prefix}-{i}", bytes=size) for i, size in enumerate(sizes)]}
    response = signed_post(client, body)
    assert response.status_code == 200, response.content
    line.refresh_from_db()
    return line


def block_commands(line):
    return list(NetworkCommand.objects.filter(line=line).values_list("command", "reason", "status"))


@pytest.mark.parametrize("with_rule", [True, False], ids=["block_rule", "no_rule"])
def test_block_policy_stops_data_at_zero_and_tells_the_network(client, customer, package, with_rule):
    line = make_line(owner=customer, package=package, data_remaining_bytes=10 * MB, data_used_bytes=0)
    if with_rule:
        rule_for(line, package, Policy.BLOCK)
    line = send(client, line, 6 * MB, 6 * MB)
    assert line.status == Line.Status.DATA_EXHAUSTED
    assert (line.data_remaining_bytes, line.data_used_bytes, line.overage_bytes) == (0, 12 * MB, 0)
    assert block_commands(line) == [("block_data", "data exhausted", "pending")]


def test_usage_after_the_block_adds_no_second_command(client, customer, package):
    line = make_line(owner=customer, package=package, data_remaining_bytes=MB, data_used_bytes=0)
    send(client, line, 2 * MB, prefix="a")
    line = send(client, line, 3 * MB, prefix="b")
    assert (line.status, line.data_remaining_bytes, line.data_used_bytes) == (Line.Status.DATA_EXHAUSTED, 0, 5 * MB)
    assert len(block_commands(line)) == 1


def test_reaching_exactly_zero_blocks(client, customer, package):
    line = send(client, make_line(owner=customer, package=package, data_remaining_bytes=MB), MB)
    assert (line.status, line.data_remaining_bytes) == (Line.Status.DATA_EXHAUSTED, 0)


def test_usage_above_zero_changes_no_status(client, line):
    line = send(client, line, MB)
    assert line.status == Line.Status.ACTIVE
    assert not NetworkCommand.objects.exists()


@pytest.mark.parametrize("policy", [Policy.DEDUCT_FROM_NEXT, Policy.BILL_OVERAGE])
def test_continuing_policies_count_overage_up_to_the_cap_then_block(client, customer, package, policy):
    line = make_line(owner=customer, package=package, data_remaining_bytes=10 * MB, data_used_bytes=0)
    rule_for(line, package, policy, cap_mb=100)
    line = send(client, line, 40 * MB, prefix="a")
    assert (line.status, line.data_remaining_bytes, line.overage_bytes) == (Line.Status.ACTIVE, 0, 30 * MB)
    assert not NetworkCommand.objects.exists()

    line = send(client, line, 50 * MB, prefix="b")
    assert (line.status, line.overage_bytes) == (Line.Status.ACTIVE, 80 * MB)

    line = send(client, line, 50 * MB, prefix="c")
    # Only the cap the customer agreed to is counted as overage; usage is still recorded as used.
    assert (line.status, line.data_remaining_bytes, line.overage_bytes, line.data_used_bytes) == (
        Line.Status.DATA_EXHAUSTED,
        0,
        100 * MB,
        140 * MB,
    )
    assert block_commands(line) == [("block_data", "data exhausted", "pending")]


def test_continuing_policy_without_a_cap_blocks_at_zero(client, customer, package):
    line = make_line(owner=customer, package=package, data_remaining_bytes=MB, data_used_bytes=0)
    rule_for(line, package, Policy.DEDUCT_FROM_NEXT, cap_mb=None)
    line = send(client, line, 2 * MB)
    assert (line.status, line.overage_bytes) == (Line.Status.DATA_EXHAUSTED, 0)


def test_overage_is_taken_from_the_next_package(client, customer, package):
    from django.utils import timezone

    from accounts.services import apply_package

    line = make_line(owner=customer, package=package, data_remaining_bytes=10 * MB, data_used_bytes=0)
    rule_for(line, package, Policy.DEDUCT_FROM_NEXT, cap_mb=100)
    line = send(client, line, 30 * MB)
    line = apply_package(line=line, package=package, now=timezone.now())
    assert line.data_remaining_bytes == package.data_allowance_bytes - 20 * MB


@pytest.mark.parametrize("status", [Line.Status.SUSPENDED, Line.Status.INACTIVE, Line.Status.EXPIRED])
def test_a_line_that_is_not_active_keeps_its_status_but_its_data_is_blocked_at_zero(client, customer, package, status):
    line = send(client, make_line(owner=customer, package=package, status=status, data_remaining_bytes=MB), 5 * MB)
    assert (line.status, line.data_remaining_bytes, line.data_blocked) == (status, 0, True)
    # Never silently: the data switch follows the usage whatever the status (docs/line-states.md).
    assert block_commands(line) == [("block_data", "data exhausted", "pending")]


def test_remaining_never_goes_below_zero_even_from_a_negative_start(client, customer, package):
    line = send(client, make_line(owner=customer, package=package, data_remaining_bytes=-5 * MB, data_used_bytes=0), MB)
    assert (line.data_remaining_bytes, line.data_used_bytes) == (0, MB)


def test_a_whole_batch_crossing_zero_blocks_only_the_exhausted_lines(client, customer, package):
    low = make_line(owner=customer, package=package, data_remaining_bytes=MB)
    plenty = make_line(owner=customer, package=package, data_remaining_bytes=GB)
    body = {"records": [record(low, id="low", bytes=2 * MB), record(plenty, id="plenty", bytes=2 * MB)]}
    assert signed_post(client, body).status_code == 200
    assert list(NetworkCommand.objects.values_list("line_id", flat=True)) == [low.pk]
