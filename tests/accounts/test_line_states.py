"""A line's life as one state machine (docs/line-states.md): each transition writes the network
command it implies in its own transaction, so the network's state follows the database's."""

from datetime import timedelta

import time_machine
from django.utils import timezone

from accounts.models import Line, NetworkCommand
from accounts.services import apply_package
from accounts.services.line_status import resume_line, suspend_line
from accounts.tasks import expire_lines
from renewals.models import Renewal, RenewalRule
from renewals.services import suspension
from tests.builders import GB, MB, make_line
from tests.partner.helpers import record, signed_post


def commands(line) -> list[str]:
    return list(NetworkCommand.objects.filter(line=line).order_by("id").values_list("command", flat=True))


def pay(line, package, now=None) -> Line:
    apply_package(line=line, package=package, now=now or timezone.now())
    line.refresh_from_db()
    return line


# --- A. money changes a line, and the network hears of it ----------------------------------------


def test_a_purchase_on_a_line_out_of_data_unblocks_its_data_at_the_network(customer, package):
    line = pay(make_line(owner=customer, status=Line.Status.DATA_EXHAUSTED, data_remaining_bytes=0), package)
    assert line.status == Line.Status.ACTIVE
    assert commands(line) == ["unblock_data"]


def test_a_purchase_on_a_line_suspended_for_non_payment_resumes_it_at_the_network(customer, package):
    line = pay(make_line(owner=customer, status=Line.Status.SUSPENDED, data_remaining_bytes=GB), package)
    assert line.status == Line.Status.ACTIVE
    assert commands(line) == ["resume"]


def test_a_purchase_on_an_expired_line_resumes_it_at_the_network(customer, package):
    now = timezone.now()
    line = make_line(owner=customer, status=Line.Status.EXPIRED, expires_at=now - timedelta(days=1))
    line = pay(line, package, now=now)
    assert (line.status, line.expires_at) == (Line.Status.ACTIVE, now + timedelta(days=package.validity_days))
    assert commands(line) == ["resume"]


def test_a_purchase_on_an_active_line_tells_the_network_nothing(customer, package):
    line = pay(make_line(owner=customer), package)
    assert line.status == Line.Status.ACTIVE
    assert commands(line) == []


def test_a_payment_never_lifts_an_operators_suspension_but_still_delivers_what_was_paid(customer, package):
    now = timezone.now()
    line = make_line(
        owner=customer, status=Line.Status.DATA_EXHAUSTED, data_remaining_bytes=0, expires_at=now + timedelta(days=1)
    )
    assert suspend_line(line_id=line.pk, reason="fraud check", actor=None, now=now)
    line = pay(line, package, now=now)
    assert line.status == Line.Status.SUSPENDED
    assert (line.data_remaining_bytes, line.expires_at) == (
        package.data_allowance_bytes,
        now + timedelta(days=package.validity_days),
    )
    # The data switch follows the payment; the service switch stays off until the operator resumes.
    assert commands(line) == ["suspend", "unblock_data"]

    assert resume_line(line_id=line.pk, reason="checked", actor=None, now=now)
    line.refresh_from_db()
    assert line.status == Line.Status.ACTIVE
    assert commands(line) == ["suspend", "unblock_data", "resume"]


def test_an_operator_suspending_a_line_already_suspended_for_non_payment_keeps_it_suspended_after_payment(
    customer, package
):
    line = make_line(owner=customer, status=Line.Status.SUSPENDED)
    assert suspend_line(line_id=line.pk, reason="fraud check", actor=None, now=timezone.now())
    line = pay(line, package)
    assert line.status == Line.Status.SUSPENDED
    assert commands(line) == []  # already off at the network; nothing changed there


# --- C. usage never changes a line's state silently ----------------------------------------------


def use(client, line, size, record_id) -> Line:
    body = {"records": [record(line, id=record_id, bytes=size)]}
    assert signed_post(client, body).status_code == 200
    line.refresh_from_db()
    return line


def test_usage_that_empties_a_suspended_line_blocks_its_data_and_the_resume_keeps_it_blocked(client, customer, package):
    now = timezone.now()
    line = make_line(owner=customer, package=package, data_remaining_bytes=GB, data_used_bytes=0)
    assert suspend_line(line_id=line.pk, reason="support", actor=None, now=now)
    line = use(client, line, 2 * GB, "while-suspended")
    assert (line.status, line.data_remaining_bytes) == (Line.Status.SUSPENDED, 0)
    assert commands(line) == ["suspend", "block_data"]

    assert resume_line(line_id=line.pk, reason="done", actor=None, now=now)
    line.refresh_from_db()
    assert line.status == Line.Status.DATA_EXHAUSTED
    # A partner may take resume as restoring the whole line: the block is said again after it.
    assert commands(line) == ["suspend", "block_data", "resume", "block_data"]

    line = use(client, line, GB, "after-resume")
    assert commands(line) == ["suspend", "block_data", "resume", "block_data"]  # nothing new to say


def test_a_line_resumed_at_zero_under_an_overage_allowance_is_not_out_of_data(client, customer, package):
    now = timezone.now()
    line = make_line(owner=customer, package=package, data_remaining_bytes=GB, data_used_bytes=0)
    RenewalRule.objects.create(
        line=line,
        package=package,
        overage_policy=RenewalRule.OveragePolicy.DEDUCT_FROM_NEXT,
        overage_cap_mb=1024,
        enabled=False,
    )
    line = use(client, line, GB + 10 * MB, "into-overage")
    assert (line.status, line.data_remaining_bytes, line.overage_bytes) == (Line.Status.ACTIVE, 0, 10 * MB)
    assert suspend_line(line_id=line.pk, reason="support", actor=None, now=now)
    assert resume_line(line_id=line.pk, reason="done", actor=None, now=now)
    line.refresh_from_db()
    assert line.status == Line.Status.ACTIVE
    assert commands(line) == ["suspend", "resume"]


def test_a_never_activated_line_suspended_then_resumed_comes_back_inactive(customer):
    now = timezone.now()
    line = make_line(
        owner=customer, status=Line.Status.INACTIVE, data_remaining_bytes=0, data_used_bytes=0, expires_at=None
    )
    assert suspend_line(line_id=line.pk, reason="support", actor=None, now=now)
    assert resume_line(line_id=line.pk, reason="done", actor=None, now=now)
    line.refresh_from_db()
    assert line.status == Line.Status.INACTIVE
    assert commands(line) == ["suspend", "resume"]


# --- B. validity is enforced ----------------------------------------------------------------------


def test_a_line_whose_validity_ended_expires_at_the_next_sweep_and_the_network_suspends_it(customer, package, settings):
    start = timezone.now()
    line = make_line(owner=customer, package=package, expires_at=start + timedelta(hours=1))
    with time_machine.travel(start + timedelta(minutes=59), tick=False):
        assert expire_lines() == 0
    with time_machine.travel(start + timedelta(hours=1, seconds=1), tick=False):
        assert expire_lines() == 1
        assert expire_lines() == 0  # once
    line.refresh_from_db()
    assert line.status == Line.Status.EXPIRED
    assert list(NetworkCommand.objects.filter(line=line).values_list("command", "reason")) == [
        ("suspend", "validity ended")
    ]
    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "accounts.expire_lines" in schedule
    assert settings.CELERY_TASK_ROUTES["accounts.expire_lines"] == {"queue": "sweeps"}


def test_an_out_of_data_line_that_expires_keeps_its_data_blocked(customer, package):
    now = timezone.now()
    line = make_line(
        owner=customer, status=Line.Status.DATA_EXHAUSTED, data_remaining_bytes=0, expires_at=now - timedelta(seconds=1)
    )
    assert expire_lines() == 1
    line.refresh_from_db()
    assert (line.status, line.data_blocked) == (Line.Status.EXPIRED, True)
    assert commands(line) == ["suspend"]
    line = pay(line, package)
    # A package bigger than nothing lifts both: the service and the data.
    assert line.status == Line.Status.ACTIVE
    assert commands(line) == ["suspend", "resume", "unblock_data"]


def test_the_expiry_sweep_takes_a_bounded_number_of_lines_per_tick(customer, package, settings):
    now = timezone.now()
    lines = [make_line(owner=customer, package=package, expires_at=now - timedelta(minutes=i)) for i in range(3)]
    settings.LINES_EXPIRE_PER_TICK = 2
    assert expire_lines() == 2
    assert expire_lines() == 1
    assert {line.status for line in Line.objects.filter(pk__in=[line.pk for line in lines])} == {Line.Status.EXPIRED}


def test_a_suspended_line_whose_validity_ended_is_resumed_as_expired_and_stays_off_at_the_network(customer, package):
    start = timezone.now()
    line = make_line(owner=customer, package=package, expires_at=start + timedelta(hours=1))
    assert suspend_line(line_id=line.pk, reason="support", actor=None, now=start)
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        assert expire_lines() == 0  # suspended outranks expired
        assert resume_line(line_id=line.pk, reason="done", actor=None, now=timezone.now())
    line.refresh_from_db()
    assert line.status == Line.Status.EXPIRED
    assert commands(line) == ["suspend"]


# --- D. the renewal engine's suspension is a line transition like the others ---------------------


def _fail_a_renewal_of(line, package, now):
    """A cycle out of attempts and past its grace, then the engine's suspension sweep."""
    Renewal.objects.create(
        line=line,
        package=package,
        payer=line.owner,
        amount_minor=package.price_minor,
        currency=package.currency,
        status=Renewal.Status.FAILED,
        completed_at=now,
        suspend_at=now,
    )
    suspension.suspend_overdue_lines(now=now)
    line.refresh_from_db()
    return line


def test_an_unpaid_cycle_suspends_an_active_line_through_its_transition_and_the_history_names_it(customer, package):
    from accounts.models import ChangeRecord

    now = timezone.now()
    line = _fail_a_renewal_of(make_line(owner=customer, package=package), package, now)
    assert (line.status, line.suspended_by_operator) == (Line.Status.SUSPENDED, False)
    assert commands(line) == ["suspend"]
    assert ChangeRecord.objects.filter(object_id=str(line.pk), action="suspended_for_payment").exists()
    line = pay(line, package, now=now)
    assert (line.status, commands(line)) == (Line.Status.ACTIVE, ["suspend", "resume"])


def test_an_unpaid_cycle_suspending_an_expired_line_tells_the_network_nothing_new(customer, package):
    """The service of an expired line is off already: a second `suspend` would say nothing."""
    now = timezone.now()
    line = make_line(owner=customer, package=package, status=Line.Status.EXPIRED, expires_at=now - timedelta(hours=1))
    line = _fail_a_renewal_of(line, package, now)
    assert line.status == Line.Status.SUSPENDED
    assert commands(line) == []
    line = pay(line, package, now=now)
    assert (line.status, commands(line)) == (Line.Status.ACTIVE, ["resume"])


def test_an_unpaid_cycle_keeps_an_out_of_data_lines_data_switch_through_the_suspension(customer, package):
    """The suspension keeps the data switch on the row (begin_transition), so the payment that
    lifts it knows the data was blocked, even for a row saved before `data_blocked` existed."""
    now = timezone.now()
    line = make_line(owner=customer, package=package, status=Line.Status.DATA_EXHAUSTED, data_remaining_bytes=0)
    line = _fail_a_renewal_of(line, package, now)
    assert (line.status, line.data_blocked) == (Line.Status.SUSPENDED, True)
    line = pay(line, package, now=now)
    assert (line.status, commands(line)) == (Line.Status.ACTIVE, ["suspend", "resume", "unblock_data"])
