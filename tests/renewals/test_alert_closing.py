"""An alert whose condition has cleared closes itself, with a history row saying why
(renewals.services.alerts, docs/console.md "Alerts that close themselves")."""

from datetime import timedelta

from django.utils import timezone

from accounts.models import ChangeRecord, Line
from accounts.services.line_status import resume_line
from renewals.models import Alert, Renewal
from renewals.services import alerts
from renewals.services.dispatcher import run_dispatcher
from tests.builders import make_line, make_package, make_renewal, make_user


def _history(alert):
    return list(ChangeRecord.objects.filter(object_id=str(alert.pk), action="closed_automatically"))


def test_a_failed_renewal_alert_closes_when_the_operator_restores_the_line(db):
    now = timezone.now()
    line = make_line(owner=make_user(), status=Line.Status.SUSPENDED)
    renewal = make_renewal(
        line=line, package=make_package(), status=Renewal.Status.FAILED, completed_at=now, line_suspended_at=now
    )
    alert = alerts.raise_alert(kind=Alert.Kind.RENEWAL_FAILED, line=line, renewal=renewal, message="failed", now=now)
    assert alerts.close_cleared_alerts(now=now) == 0  # still suspended: the alert holds
    resume_line(line_id=line.pk, reason="paid by bank transfer", actor=None, now=now)
    run_dispatcher(now=now + timedelta(minutes=1), enqueue=False)
    alert.refresh_from_db()
    assert alert.resolved_at == now + timedelta(minutes=1)
    (record,) = _history(alert)
    assert record.reason == "line restored" and record.actor is None


def test_a_failed_renewal_alert_in_its_grace_stays_open(db):
    now = timezone.now()
    line = make_line(owner=make_user())  # still active: the grace before suspension
    renewal = make_renewal(line=line, package=make_package(), status=Renewal.Status.FAILED, completed_at=now)
    alert = alerts.raise_alert(kind=Alert.Kind.RENEWAL_FAILED, line=line, renewal=renewal, message="failed", now=now)
    assert alerts.close_cleared_alerts(now=now) == 0
    alert.refresh_from_db()
    assert alert.resolved_at is None and not _history(alert)


def test_failure_alerts_close_when_the_renewal_is_paid(db):
    now = timezone.now()
    line = make_line(owner=make_user())
    renewal = make_renewal(line=line, package=make_package(), status=Renewal.Status.RETRY_SCHEDULED)
    alert = alerts.raise_alert(kind=Alert.Kind.REPEATED_FAILURES, line=line, renewal=renewal, message="x", now=now)
    cap = alerts.raise_alert(kind=Alert.Kind.RENEWAL_CAP_REACHED, line=line, message="cap", now=now)
    assert alerts.close_alerts_of_paid_line(line=line, now=now) == 1
    alert.refresh_from_db()
    cap.refresh_from_db()
    assert alert.resolved_at == now and cap.resolved_at is None  # a cap is for an operator to look at
    assert [r.reason for r in _history(alert)] == ["renewal paid"]
    assert alerts.close_alerts_of_paid_line(line=line, now=now) == 0  # once
