from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Line
from accounts.services import LineTerminated, apply_package
from tests.builders import GB, MB, make_line


def test_package_adds_data_and_extends_validity_to_the_later_end(customer, package):
    now = timezone.now()
    line = make_line(owner=customer, data_remaining_bytes=100 * MB, expires_at=now + timedelta(days=3))
    line = apply_package(line=line, package=package, now=now)
    assert line.data_remaining_bytes == 100 * MB + package.data_allowance_bytes
    assert line.expires_at == now + timedelta(days=package.validity_days)
    assert line.package == package


def test_validity_is_never_shortened(customer, package):
    now = timezone.now()
    far = now + timedelta(days=400)
    line = apply_package(line=make_line(owner=customer, expires_at=far), package=package, now=now)
    assert line.expires_at == far


@pytest.mark.parametrize(
    "status", [Line.Status.SUSPENDED, Line.Status.DATA_EXHAUSTED, Line.Status.INACTIVE, Line.Status.EXPIRED]
)
def test_applying_a_package_resumes_a_stopped_line(customer, package, status):
    line = apply_package(
        line=make_line(owner=customer, status=status, data_remaining_bytes=0), package=package, now=timezone.now()
    )
    assert line.status == Line.Status.ACTIVE


def test_overage_is_deducted_from_the_next_allowance_unless_billed(customer, package):
    now = timezone.now()
    deducted = apply_package(
        line=make_line(owner=customer, data_remaining_bytes=0, overage_bytes=GB), package=package, now=now
    )
    billed = apply_package(
        line=make_line(owner=customer, data_remaining_bytes=0, overage_bytes=GB),
        package=package,
        now=now,
        overage_billed_bytes=GB,
    )
    assert deducted.data_remaining_bytes == package.data_allowance_bytes - GB
    assert billed.data_remaining_bytes == package.data_allowance_bytes
    assert deducted.overage_bytes == billed.overage_bytes == 0


def test_terminated_line_gets_nothing(customer, package):
    line = make_line(owner=customer, status=Line.Status.TERMINATED, data_remaining_bytes=0)
    with pytest.raises(LineTerminated):
        apply_package(line=line, package=package, now=timezone.now())
    line.refresh_from_db()
    assert line.data_remaining_bytes == 0
