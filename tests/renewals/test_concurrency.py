"""Invariants under real concurrency: threads with their own PostgreSQL connections, committed
transactions (transaction=True), and the real localstripe."""

import os
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from payments.models import Charge
from renewals.models import Renewal
from renewals.services import charging, claims, rules, triggers
from renewals.services import dispatcher as renewals_dispatcher
from tests.builders import make_line, make_rule
from tests.partner.helpers import wait_until

from .conftest import payment_intents_for

pytestmark = pytest.mark.django_db(transaction=True)


def in_thread(target, *args):
    """Run target in a thread with its own database connection, closed afterwards."""
    box: dict = {}

    def run():
        try:
            box["result"] = target(*args)
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _waiting_on_a_lock(cursor) -> bool:
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return cursor.fetchone()[0] > 0


def due_renewals(customer, package, count, now):
    ids = []
    for _ in range(count):
        line = make_line(owner=customer, data_remaining_bytes=0)
        ids.append(triggers.open_renewal(rule=make_rule(line=line, package=package), now=now, trigger="data").pk)
    return ids


def test_a_second_dispatcher_skips_rows_the_first_holds_instead_of_waiting(customer, package, policy):
    now = timezone.now()
    ids = due_renewals(customer, package, 10, now)
    holding, release = threading.Event(), threading.Event()

    def first():
        with transaction.atomic():  # keeps its row locks until release
            claimed = claims.claim_due_renewals(now=now, limit=4)
            holding.set()
            release.wait(20)
        return claimed

    thread_a, a = in_thread(first)
    assert holding.wait(20)
    thread_b, b = in_thread(lambda: claims.claim_due_renewals(now=now))
    # The first holds its locks until released, so a second claim that blocked on them would still
    # be running after any wait: a long join only costs time when the code is wrong.
    thread_b.join(60)
    waited = thread_b.is_alive()
    release.set()
    thread_a.join(20)
    thread_b.join(20)
    assert "error" not in a and "error" not in b
    assert not waited, "the second claim blocked on the first one's rows"
    assert len(a["result"]) == 4
    assert set(a["result"]).isdisjoint(b["result"])
    assert set(a["result"]) | set(b["result"]) == set(ids)


def test_many_dispatchers_at_once_claim_each_renewal_exactly_once(customer, package, policy):
    now = timezone.now()
    ids = due_renewals(customer, package, 24, now)
    barrier = threading.Barrier(6)

    def dispatcher():
        barrier.wait(20)
        claimed = []
        while batch := claims.claim_due_renewals(now=now, limit=3):
            claimed.extend(batch)
        return claimed

    threads = [in_thread(dispatcher) for _ in range(6)]
    results = []
    for thread, box in threads:
        thread.join(30)
        assert "error" not in box
        results.extend(box["result"])
    assert sorted(results) == sorted(ids)  # every row once, none twice
    assert set(Renewal.objects.values_list("status", flat=True)) == {Renewal.Status.CHARGING}


def test_turning_the_rule_off_wins_over_a_charge_step_waiting_for_the_lock(rule):
    now = timezone.now()
    renewal = triggers.open_renewal(rule=rule, now=now, trigger="data")
    claims.claim_due_renewals(now=now)
    turned_off, release = threading.Event(), threading.Event()

    def customer_turns_off():
        with transaction.atomic():
            rules.turn_off_rule(rule=rule, now=now)
            turned_off.set()
            release.wait(20)  # the customer's request has not committed yet

    thread_off, off = in_thread(customer_turns_off)
    assert turned_off.wait(20)
    thread_charge, charge = in_thread(
        lambda: charging.prepare_charge(renewal_id=renewal.pk, customer_id="cus", payment_method_id="pm", now=now)
    )
    # Seen in PostgreSQL, not guessed from a sleep: the charge step is queued on a row lock.
    with connection.cursor() as cursor:
        assert wait_until(lambda: thread_charge.is_alive() and _waiting_on_a_lock(cursor), timeout=60), (
            "the charge step did not wait for the rule's row lock"
        )
    release.set()
    thread_off.join(20)
    thread_charge.join(20)
    assert "error" not in off and "error" not in charge
    assert charge["result"] is None
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.CANCELLED
    assert not Charge.objects.filter(renewal=renewal).exists()


def test_two_workers_running_the_same_charge_task_create_one_payment_intent(rule, add_card):
    add_card()
    now = timezone.now()
    renewal = triggers.open_renewal(rule=rule, now=now, trigger="data")
    claims.claim_due_renewals(now=now)
    barrier = threading.Barrier(2)

    def worker():
        barrier.wait(20)
        return charging.charge_renewal(renewal_id=renewal.pk, now=now).status

    workers = [in_thread(worker) for _ in range(2)]
    for thread, box in workers:
        thread.join(60)
        assert "error" not in box, box.get("error")
    renewal.refresh_from_db()
    assert renewal.status == Renewal.Status.SUCCEEDED
    assert len(payment_intents_for(renewal)) == 1
    assert Charge.objects.filter(renewal=renewal).count() == 1


def test_lost_claims_are_requeued_after_the_reconcile_delay(rule):
    now = timezone.now()
    renewal = triggers.open_renewal(rule=rule, now=now, trigger="data")
    claims.claim_due_renewals(now=now)  # ... and the broker lost the task
    assert claims.requeue_lost_claims(now=now + timedelta(minutes=5)) == []
    assert claims.requeue_lost_claims(now=now + timedelta(minutes=11)) == [renewal.pk]
    assert claims.requeue_lost_claims(now=now + timedelta(minutes=12)) == []  # once per delay


def test_a_rule_disabled_in_an_uncommitted_transaction_is_seen_by_the_charge_step(rule):
    """The charge step reads the rule under its row lock, not a snapshot from before the lock:
    an operator's bulk edit that has not committed yet is waited for, then obeyed."""
    now = timezone.now()
    renewal = triggers.open_renewal(rule=rule, now=now, trigger="data")
    claims.claim_due_renewals(now=now)
    disabled, release = threading.Event(), threading.Event()

    def operator_disables():
        with transaction.atomic():
            type(rule).objects.filter(pk=rule.pk).update(enabled=False)
            disabled.set()
            release.wait(20)

    thread_off, off = in_thread(operator_disables)
    assert disabled.wait(20)
    thread_charge, charge = in_thread(
        lambda: charging.prepare_charge(renewal_id=renewal.pk, customer_id="cus", payment_method_id="pm", now=now)
    )
    with connection.cursor() as cursor:
        assert wait_until(lambda: thread_charge.is_alive() and _waiting_on_a_lock(cursor), timeout=60)
    release.set()
    thread_off.join(20)
    thread_charge.join(20)
    assert "error" not in off and "error" not in charge
    assert charge["result"] is None
    assert not Charge.objects.filter(renewal=renewal).exists()


def test_two_beats_ticking_at_once_open_and_claim_each_renewal_once(customer, package, policy):
    """Two beat processes (or a beat and an operator's renewals_tick) sweep the same lines at the
    same moment: the database's one-open-renewal constraint and SKIP LOCKED sort them out."""
    lines = [make_line(owner=customer, data_remaining_bytes=0) for _ in range(8)]
    for line in lines:
        make_rule(line=line, package=package)
    now = timezone.now()
    barrier = threading.Barrier(4)

    def beat():
        barrier.wait(20)
        return renewals_dispatcher.run_dispatcher(now=now, enqueue=False)

    beats = [in_thread(beat) for _ in range(4)]
    claimed = []
    for thread, box in beats:
        thread.join(60)
        assert "error" not in box, box.get("error")
        claimed.extend(box["result"].claimed)
    renewals = Renewal.objects.all()
    assert renewals.count() == 8 and {r.line_id for r in renewals} == {line.pk for line in lines}
    assert sorted(claimed) == sorted(r.pk for r in renewals)


def test_a_dead_broker_loses_no_renewal(rule):
    """The usage API's immediate dispatch with Redis down (a real subprocess, pointed at a port
    where nothing listens): the renewal is claimed in the database and handed out again by the
    sweep once the reconcile delay has passed."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "esimsite.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{dead_port}/0",
    }
    code = (
        "from django.utils import timezone; from renewals.services import triggers; "
        f"print('opened', len(triggers.evaluate_triggers(line_ids=[{rule.line_id}], now=timezone.now())))"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert "opened 1" in result.stdout
    assert "charge_enqueue_failed" in result.stderr
    renewal = Renewal.objects.get(line=rule.line)
    assert renewal.status == Renewal.Status.CHARGING
    assert claims.requeue_lost_claims(now=timezone.now() + timedelta(minutes=11)) == [renewal.pk]
