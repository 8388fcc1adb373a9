"""The stateful test of issue 17 "A line's life": hypothesis drives two lines through usage at any
state (crossing zero under each overage policy), time passing their validity and the expiry sweep,
the operator's suspend / resume / terminate, renewals paid and failed, and the network outbox's
deliveries to a partner stand-in answering 2xx, 4xx, 5xx or a redirect, a slow sender whose lease
runs out while another claims and sends, and the operator's retries; after every step it checks
(line_invariants.py) that what the partner *received*, replayed, agrees with the lines' database
state.

The partner stand-in (partner_standin.py) is a real HTTP server on 127.0.0.1, spoken to by the
real sending code (the `accounts.deliver_network_commands` task's body); nothing of ours is
patched. Isolation as in the money model: each example runs in its own savepoint, rolled back at
its end, with its own clock (time-machine; the clock only moves when a step says so, so no check
depends on the machine's speed). On-commit callbacks never run (nothing reaches a worker).

Size (environment): FUZZ_LINES_EXAMPLES, FUZZ_LINES_STEPS (derandomized unless
FUZZ_LINES_RANDOM=1), FUZZ_LINES_SHRINK=1 to shrink a failure (on in `make fuzz-lines`).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections import Counter
from datetime import timedelta

import time_machine
from django.db import transaction
from django.utils import timezone
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from accounts import tasks as account_tasks
from accounts.models import Line, NetworkCommand
from accounts.services import line_status, lines
from partner import tasks as partner_tasks
from partner.services import outbox as network
from partner.services.usage import UsageInput, ingest_usage
from renewals.models import Renewal, RenewalRule
from renewals.services import suspension
from tests.builders import GB, MB, make_line, make_package, make_user

from . import line_invariants as inv
from .fuzz import machine_settings
from .partner_standin import PartnerStandIn

LINES = 2
# 2xx twice as likely; 3xx are redirects (never followed); 429 passes, the other 4xx do not.
ANSWERS = [200, 200, 204, 500, 503, 302, 307, 400, 404, 409, 422, 429]
# Clock moves: inside the first backoff, past it, past a lease, past the longest backoff, a day, past a validity.
MINUTES = [1, 3, 31, 181, 24 * 60, 5 * 24 * 60]
_ids = itertools.count(1)
# What the examples reached, over the whole run (printed by test_line_model; run with -s to see).
REACHED: Counter = Counter()


def _reached(what: str) -> None:
    REACHED[what] += 1
    if currently_in_test_context():  # not when a regression test drives the machine by hand
        event(what)


class LineMachine(RuleBasedStateMachine):
    partner: PartnerStandIn  # set by the test (one server for all examples)

    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = timezone.now().replace(microsecond=0)
        self._clock = time_machine.travel(self.now, tick=False)
        self._clock.start()
        self.world: inv.World | None = None
        self.partner.reset()

    @initialize(
        policies=st.tuples(*[st.sampled_from([p.value for p in RenewalRule.OveragePolicy])] * LINES),
        remaining_mb=st.tuples(*[st.sampled_from([100, 600])] * LINES),
        validity_days=st.tuples(*[st.sampled_from([1, 10])] * LINES),
    )
    def set_up(self, policies=("block", "block"), remaining_mb=(600, 600), validity_days=(10, 10)):
        n = next(_ids)
        self.owner = make_user(email=f"line-model-{uuid.uuid4().hex[:10]}@example.com")
        self.operator = make_user(email=f"line-operator-{uuid.uuid4().hex[:10]}@example.com", is_staff=True)
        self.package = make_package(name=f"1 GB line model #{n}", data_allowance_bytes=1 * GB, validity_days=30)
        self.lines = []
        for i in range(LINES):
            line = make_line(
                owner=self.owner,
                package=self.package,
                data_remaining_bytes=remaining_mb[i] * MB,
                data_used_bytes=400 * MB,
                expires_at=self.now + timedelta(days=validity_days[i]),
                activated_at=self.now - timedelta(days=1),
            )
            # The rule is off (no renewal is charged here): it holds the overage policy usage reads.
            RenewalRule.objects.create(
                line=line, package=self.package, enabled=False, overage_policy=policies[i], overage_cap_mb=200
            )
            self.lines.append(line)
        self.world = inv.World(
            line_ids=[line.pk for line in self.lines],
            iccids={line.pk: line.iccid for line in self.lines},
            initial_used={line.pk: line.data_used_bytes for line in self.lines},
        )

    def teardown(self):
        try:
            self._clock.stop()
        finally:
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    # --- helpers ------------------------------------------------------------------------------------

    def _line(self, which: int) -> Line:
        return Line.objects.get(pk=self.lines[which % LINES].pk)

    def _travel(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)
        self._clock.stop()
        self._clock = time_machine.travel(self.now, tick=False)
        self._clock.start()

    # --- the partner's usage ----------------------------------------------------------------------------

    @rule(which=st.integers(0, LINES - 1), mb=st.sampled_from([50, 300, 700]))
    def usage(self, which, mb):
        """A usage batch (the usage API's service), at whatever state the line is in."""
        line = self._line(which)
        ingest_usage(
            records=[
                UsageInput(
                    index=0,
                    partner_record_id=f"rec-{uuid.uuid4().hex}",
                    iccid=line.iccid,
                    bytes=mb * MB,
                    start=self.now - timedelta(minutes=5),
                    end=self.now,
                )
            ],
            now=self.now,
        )
        self.world.usage_bytes[line.pk] = self.world.usage_bytes.get(line.pk, 0) + mb * MB

    # --- money ----------------------------------------------------------------------------------------

    @rule(which=st.integers(0, LINES - 1))
    def renewal_paid(self, which):
        """A paid package (every money path ends in apply_package)."""
        try:
            lines.apply_package(line=self._line(which), package=self.package, now=self.now)
        except lines.LineTerminated:
            pass  # the payment side refunds (docs/precedence.md)

    @rule(which=st.integers(0, LINES - 1))
    def renewal_failed(self, which):
        """A renewal cycle that ran out of attempts, past its grace: the engine's suspension sweep."""
        line = self._line(which)
        if Renewal.objects.filter(line=line, status__in=Renewal.OPEN).exists():
            return
        Renewal.objects.create(
            line=line,
            package=self.package,
            payer=self.owner,
            amount_minor=self.package.price_minor,
            currency=self.package.currency,
            status=Renewal.Status.FAILED,
            completed_at=self.now,
            suspend_at=self.now,
        )
        suspension.suspend_overdue_lines(now=self.now)

    # --- time and the expiry sweep --------------------------------------------------------------------

    @rule(minutes=st.sampled_from(MINUTES))
    def time_passes(self, minutes):
        self._travel(minutes)

    @rule()
    def expiry_sweep(self):
        """The beat's `accounts.expire_lines` task."""
        account_tasks.expire_lines()
        self.world.last_expiry_sweep_at = self.now

    # --- the operator --------------------------------------------------------------------------------

    @rule(which=st.integers(0, LINES - 1))
    def operator_suspend(self, which):
        line = self._line(which)
        if line_status.suspend_line(line_id=line.pk, reason="operator", actor=self.operator, now=self.now):
            self.world.operator_suspended.add(line.pk)

    @rule(which=st.integers(0, LINES - 1))
    def operator_resume(self, which):
        line = self._line(which)
        if line_status.resume_line(line_id=line.pk, reason="operator", actor=self.operator, now=self.now):
            self.world.operator_suspended.discard(line.pk)

    @rule(which=st.integers(0, LINES - 1))
    def operator_terminate(self, which):
        line = self._line(which)
        if line_status.terminate_line(line_id=line.pk, reason="terminated", actor=self.operator, now=self.now):
            self.world.terminated.add(line.pk)
            self.world.operator_suspended.discard(line.pk)
            self.world.last_command_at_termination[line.pk] = (
                NetworkCommand.objects.filter(line_id=line.pk).order_by("-pk").values_list("pk", flat=True).first() or 0
            )
            self.world.notice_level_at_termination[line.pk] = Line.objects.get(pk=line.pk).usage_notice_level

    @rule(which=st.integers(0, 20))
    def operator_retry(self, which):
        """The admin's "Retry the selected commands now" on a dead letter or a command in backoff."""
        candidates = list(
            NetworkCommand.objects.filter(
                line_id__in=self.world.line_ids,
                status__in=[NetworkCommand.Status.FAILED, NetworkCommand.Status.PENDING],
            ).order_by("pk")
        )
        if candidates:
            network.retry_command_now(command=candidates[which % len(candidates)], now=self.now)

    # --- the outbox ----------------------------------------------------------------------------------

    @rule(answer=st.sampled_from(ANSWERS))
    def deliver(self, answer):
        """One delivery sweep (the `accounts.deliver_network_commands` task) with the partner answering `answer`."""
        self.partner.answer = answer
        partner_tasks.deliver_network_commands()

    @rule(answer=st.sampled_from(ANSWERS), second_sender=st.booleans())
    def slow_sender(self, answer, second_sender):
        """A sender claims, then stalls past its lease; maybe another sweep claims and sends
        meanwhile (answered `answer`); then the stalled one reaches its send. It may send only
        what nobody re-claimed."""
        stalled = network.claim_due_commands(now=self.now)
        self._travel(network.DELIVERY_LEASE.total_seconds() / 60 + 1)
        if second_sender:
            self.partner.answer = answer
            partner_tasks.deliver_network_commands()
        self.partner.answer = 200
        for command in stalled:
            _reached(
                "slow sender: sent" if network.deliver(command=command, now=timezone.now()) else "slow sender: fenced"
            )

    @rule(sweeps=st.sampled_from([3, network.MAX_ATTEMPTS]))
    def partner_down(self, sweeps):
        """The partner answers 503 for a long time: each sweep runs when the heads' backoff is over
        (MAX_ATTEMPTS sweeps use up a command's attempts: it is dead-lettered, the line's later
        commands go ahead)."""
        self.partner.answer = 503
        for _ in range(sweeps):
            pending = NetworkCommand.objects.filter(
                line_id__in=self.world.line_ids, status=NetworkCommand.Status.PENDING
            )
            if not pending.exists():
                break
            due = min(pending.order_by("next_attempt_at").values_list("next_attempt_at", flat=True)[:1])
            if due > self.now:
                self._travel((due - self.now).total_seconds() / 60 + 1 / 60)
            partner_tasks.deliver_network_commands()
        self.partner.answer = 200

    @rule()
    def drain(self):
        """The partner answers 2xx and time passes until no command is pending."""
        self.partner.answer = 200
        for _ in range(50):
            pending = NetworkCommand.objects.filter(
                line_id__in=self.world.line_ids, status=NetworkCommand.Status.PENDING
            )
            if not pending.exists():
                return
            due = max(pending.order_by("-next_attempt_at").values_list("next_attempt_at", flat=True)[:1])
            if due > self.now:
                self._travel((due - self.now).total_seconds() / 60 + 1 / 60)
            partner_tasks.deliver_network_commands()
        raise AssertionError("the outbox did not drain with the partner answering 2xx")

    # --- invariants ------------------------------------------------------------------------------------

    def check_all(self) -> None:
        if self.world is None:
            return
        inv.check_received_in_order(self.world, self.partner)
        inv.check_partner_matches_outbox(self.world, self.partner)
        inv.check_refusals_dead_lettered(self.world, self.partner)
        if inv.check_network_follows_line(self.world, self.partner):
            _reached("replay compared with a drained line")
        commands = NetworkCommand.objects.filter(line_id__in=self.world.line_ids)
        for status in (NetworkCommand.Status.FAILED, NetworkCommand.Status.SUPERSEDED):
            if commands.filter(status=status).exists():
                _reached(f"a command {status}")
        for line in Line.objects.filter(pk__in=self.world.line_ids):
            _reached(f"a line {line.status}")
        inv.check_no_needless_commands(self.world)
        inv.check_precedence(self.world, self.now)
        inv.check_termination(self.world)
        inv.check_bytes(self.world)

    @invariant()
    def line_invariants(self):
        self.check_all()


def test_line_model(db, partner):
    examples = int(os.environ.get("FUZZ_LINES_EXAMPLES", "20"))
    steps = int(os.environ.get("FUZZ_LINES_STEPS", "30"))
    LineMachine.partner = partner
    REACHED.clear()
    run_state_machine_as_test(
        LineMachine,
        settings=machine_settings(
            env_prefix="FUZZ_LINES", database_dir=".hypothesis/line-model", examples=examples, steps=steps
        ),
    )
    print(f"\nline model: {examples} examples x {steps} steps; steps after which each was seen:")
    for what, count in sorted(REACHED.items()):
        print(f"  {what}: {count}")
