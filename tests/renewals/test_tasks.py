"""Beat's schedule drives the dispatcher; the tasks are registered under stable names."""

from datetime import timedelta

import pytest
from django.conf import settings

from esimsite.celery import app
from renewals import tasks
from renewals.models import Renewal


@pytest.mark.pure
def test_beat_ticks_the_dispatcher_every_30_seconds_by_default():
    entry = settings.CELERY_BEAT_SCHEDULE["renewals-dispatch"]
    assert entry["task"] == tasks.dispatch_renewals.name == "renewals.dispatch_renewals"
    assert entry["schedule"] == timedelta(seconds=30)
    assert "renewals.charge_renewal" in app.tasks and "renewals.dispatch_renewals" in app.tasks


@pytest.mark.pure
def test_charge_task_is_acknowledged_only_after_it_ran():
    assert tasks.charge_renewal_task.acks_late and tasks.charge_renewal_task.reject_on_worker_lost


def test_dispatch_task_run_in_process_opens_and_claims(rule):
    summary = tasks.dispatch_renewals.run()
    assert "opened=1" in summary and "claimed=1" in summary
    assert Renewal.objects.get(line=rule.line).status == Renewal.Status.CHARGING
