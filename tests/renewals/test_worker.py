"""Real Celery worker processes against the test database, Redis and localstripe: a charge task
delivered twice, and a worker SIGKILLed between Stripe's answer and our commit. The processor's
own list of PaymentIntents is the judge (docs/invariants.md #1)."""

import os
import re
import signal
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from accounts.models import Line, Notice
from esimsite.celery import app
from payments.models import Charge
from renewals.models import Renewal
from renewals.services import charging, claims, dispatcher, triggers
from renewals.tasks import charge_renewal_task
from tests.partner.helpers import celery_worker, wait_until

from .conftest import payment_intents_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def claimed_renewal(rule) -> Renewal:
    now = timezone.now()
    renewal = triggers.open_renewal(rule=rule, now=now, trigger="data")
    assert claims.claim_due_renewals(now=now, renewal_ids=[renewal.pk]) == [renewal.pk]
    return renewal


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_a_charge_task_delivered_twice_to_real_workers_charges_once(rule, add_card, tmp_path):
    add_card()
    renewal = claimed_renewal(rule)
    app.control.purge()
    charge_renewal_task.delay(renewal.pk)
    charge_renewal_task.delay(renewal.pk)
    log = tmp_path / "worker.log"
    with celery_worker(log, CELERY_WORKER_NAME="renewals"):
        assert wait_until(lambda: log_text(log).count("renewals.charge_renewal[") >= 4, timeout=60), log_text(log)
        assert wait_until(lambda: Renewal.objects.get(pk=renewal.pk).status == Renewal.Status.SUCCEEDED, timeout=30)
    assert len(payment_intents_for(renewal)) == 1
    assert Charge.objects.filter(renewal=renewal).count() == 1
    assert "reason=not_charging" in log_text(log) or "reason=attempt_in_flight" in log_text(log)


def test_a_worker_killed_after_stripe_answered_is_reconciled_without_a_second_charge(rule, add_card, tmp_path):
    add_card()
    renewal = claimed_renewal(rule)
    app.control.purge()
    # Hold the line's row lock: the worker gets Stripe's answer, then blocks on its way to commit.
    locked, release = threading.Event(), threading.Event()

    def hold_line_lock():
        try:
            with transaction.atomic():
                # NO KEY: the worker may still insert its Charge (a foreign key to the line).
                Line.objects.select_for_update(no_key=True).get(pk=rule.line_id)
                locked.set()
                release.wait(120)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_line_lock, daemon=True)
    holder.start()
    assert locked.wait(20)
    log = tmp_path / "worker.log"
    with celery_worker(log) as worker:
        charge_renewal_task.delay(renewal.pk)
        assert wait_until(lambda: [pi["status"] for pi in payment_intents_for(renewal)] == ["succeeded"], timeout=60), (
            log_text(log)
        )
        with connection.cursor() as cursor:
            assert wait_until(lambda: _waiting_on_a_lock(cursor), timeout=20)
        os.kill(worker.pid, signal.SIGKILL)  # between the processor's answer and our commit
        worker.wait(20)
    release.set()
    holder.join(20)
    charge = Charge.objects.get(renewal=renewal)
    assert charge.status == Charge.Status.PENDING  # the answer was lost with the worker
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CHARGING

    # Redis hands an unacknowledged (acks_late) task to a worker again once its visibility timeout
    # passes; we deliver it again at once rather than wait: it must see the attempt in flight.
    log2 = tmp_path / "worker2.log"
    with celery_worker(log2):
        charge_renewal_task.delay(renewal.pk)
        assert wait_until(lambda: "reason=attempt_in_flight" in log_text(log2), timeout=60), log_text(log2)
    assert len(payment_intents_for(renewal)) == 1

    report = dispatcher.run_dispatcher(
        now=timezone.now() + settings.RENEWALS_RECONCILE_AFTER + timedelta(seconds=1), enqueue=False
    )
    assert report.reconciled == [charge.pk]
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert [pi["status"] for pi in payment_intents_for(renewal)] == ["succeeded"]
    assert Charge.objects.get(renewal=renewal).status == Charge.Status.SUCCEEDED


def test_a_backlog_of_charges_does_not_hold_back_the_dispatcher_tick(customer, package, policy, add_card, tmp_path):
    """Beat's tick expires after one interval. Behind a backlog of charges in the same queue it
    expired unseen, so the dispatcher (and its reconciliation) stopped while charges drained."""
    from accounts.heartbeats import DISPATCHER, last_beat
    from renewals.tasks import dispatch_renewals
    from tests.builders import make_line, make_rule

    add_card()
    renewals = [
        claimed_renewal(
            make_rule(line=make_line(owner=customer, package=package, data_remaining_bytes=0), package=package)
        )
        for _ in range(30)
    ]
    app.control.purge()
    for renewal in renewals:
        charge_renewal_task.delay(renewal.pk)
    log = tmp_path / "worker.log"
    with celery_worker(log):
        assert wait_until(lambda: "renewals.charge_renewal[" in log_text(log), timeout=60), log_text(log)
        dispatch_renewals.apply_async(expires=2)  # the backlog takes longer than that to drain
        assert wait_until(lambda: last_beat(DISPATCHER) is not None, timeout=30), log_text(log)
        done_when_ticked = Renewal.objects.filter(
            pk__in=[r.pk for r in renewals], status=Renewal.Status.SUCCEEDED
        ).count()
        assert wait_until(lambda: Renewal.objects.filter(status=Renewal.Status.SUCCEEDED).count() == 30, timeout=180), (
            log_text(log)
        )
    assert done_when_ticked < 25
    assert "Discarding revoked task: renewals.dispatch_renewals" not in log_text(log)


def _waiting_on_a_lock(cursor) -> bool:
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return cursor.fetchone()[0] > 0


def test_the_tick_hands_stale_charges_to_real_workers_which_settle_each_once(
    rule, add_card, customer, package, tmp_path
):
    from payments import gateways
    from tests.builders import MB, make_line, make_rule

    pm = add_card()
    stripe_customer = gateways.ensure_customer(customer)
    other_rule = make_rule(
        line=make_line(owner=customer, package=package, data_remaining_bytes=100 * MB), package=package
    )
    paid, never_sent = claimed_renewal(rule), claimed_renewal(other_rule)
    now = timezone.now()
    # One attempt the processor took (the worker died before recording it), one it never received.
    sent = charging.prepare_charge(renewal_id=paid.pk, customer_id=stripe_customer.id, payment_method_id=pm.id, now=now)
    assert gateways.charge_off_session(
        charge=sent.charge, customer_id=stripe_customer.id, payment_method_id=pm.id
    ).succeeded
    lost = charging.prepare_charge(
        renewal_id=never_sent.pk, customer_id=stripe_customer.id, payment_method_id=pm.id, now=now
    )
    app.control.purge()

    later = now + settings.RENEWALS_RECONCILE_AFTER + timedelta(seconds=1)
    report = dispatcher.run_dispatcher(now=later, enqueue=True)
    # The tick only hands them out: no processor look-up between it and its claim.
    assert sorted(report.reconciling) == sorted([sent.charge.pk, lost.charge.pk]) and report.reconciled == []
    assert Charge.objects.filter(status=Charge.Status.PENDING).count() == 2
    assert dispatcher.run_dispatcher(now=later, enqueue=True).reconciling == []  # handed out once per lease

    log = tmp_path / "worker.log"
    with celery_worker(log):
        from renewals.tasks import reconcile_charge_task

        assert wait_until(lambda: not Charge.objects.filter(status=Charge.Status.PENDING).exists(), timeout=60), (
            log_text(log)
        )
        reconcile_charge_task.delay(sent.charge.pk)  # a redelivered task finds it settled
        assert wait_until(lambda: "charge_reconcile_skipped" in log_text(log), timeout=30), log_text(log)
    assert Renewal.objects.get(pk=paid.pk).status == Renewal.Status.SUCCEEDED
    assert [pi["status"] for pi in payment_intents_for(paid)] == ["succeeded"]
    # Never received: due again at once, no retry spent (docs/invariants.md #11).
    assert Renewal.objects.get(pk=never_sent.pk).status == Renewal.Status.DUE
    assert Renewal.objects.get(pk=never_sent.pk).failures == 0
    assert Charge.objects.get(pk=lost.charge.pk).failure_code == "not_sent"
    assert payment_intents_for(never_sent) == []


def test_a_batch_charge_task_delivered_twice_to_real_workers_charges_each_renewal_once(
    customer, package, policy, add_card, tmp_path, settings
):
    """One message charges several renewals, their processor calls overlapping on the worker's
    threads (docs/performance-renewals.md); each is still the one-renewal charge step, so the
    batch delivered twice sends nothing twice."""
    from renewals.tasks import charge_renewals_task
    from tests.builders import make_line, make_rule

    add_card()
    renewals = [
        claimed_renewal(
            make_rule(line=make_line(owner=customer, package=package, data_remaining_bytes=0), package=package)
        )
        for _ in range(6)
    ]
    ids = [renewal.pk for renewal in renewals]
    app.control.purge()
    charge_renewals_task.delay(ids)
    charge_renewals_task.delay(ids)
    log = tmp_path / "worker.log"
    with celery_worker(log, RENEWALS_CHARGE_THREADS="4"):
        assert wait_until(lambda: log_text(log).count("renewals.charge_renewals[") >= 4, timeout=60), log_text(log)
        assert wait_until(
            lambda: Renewal.objects.filter(pk__in=ids, status=Renewal.Status.SUCCEEDED).count() == 6, timeout=60
        ), log_text(log)
    for renewal in renewals:
        assert [pi["status"] for pi in payment_intents_for(renewal)] == ["succeeded"]
        assert Charge.objects.filter(renewal=renewal).count() == 1
    assert "reason=not_charging" in log_text(log) or "reason=attempt_in_flight" in log_text(log)


def test_the_tick_hands_claimed_renewals_to_real_workers_in_batches(customer, package, policy, add_card, tmp_path):
    from tests.builders import make_line, make_rule

    add_card()
    for _ in range(5):
        make_rule(line=make_line(owner=customer, package=package, data_remaining_bytes=0), package=package)
    app.control.purge()
    with override_settings(RENEWALS_CHARGE_BATCH_SIZE=3):
        report = dispatcher.run_dispatcher(now=timezone.now(), enqueue=True)
    assert len(report.claimed) == 5
    log = tmp_path / "worker.log"
    with celery_worker(log):
        assert wait_until(lambda: Renewal.objects.filter(status=Renewal.Status.SUCCEEDED).count() == 5, timeout=60), (
            log_text(log)
        )
        # Each batch kicks the email sender once, after its last renewal committed.
        assert wait_until(lambda: not Notice.objects.exclude(status=Notice.Status.SENT).exists(), timeout=60), log_text(
            log
        )
    # Two messages (3 + 2 renewals), not five; and two email kicks, not five.
    assert len(re.findall(r"Task renewals\.charge_renewals\[[^\]]+\] received", log_text(log))) == 2, log_text(log)
    assert len(re.findall(r"Task accounts\.send_notices\[[^\]]+\] received", log_text(log))) == 2, log_text(log)
    assert "Task renewals.charge_renewal[" not in log_text(log)
    for renewal in Renewal.objects.filter(pk__in=report.claimed):
        assert [pi["status"] for pi in payment_intents_for(renewal)] == ["succeeded"]
