"""The stateful test of issue "Money seams": hypothesis drives random interleavings of the money
flows (usage, rule edits, operator edits and actions, purchases, pay-now in two tabs, 3-D Secure
completed / abandoned / late, webhooks duplicated and out of order, beat ticks with time moving
past retries, grace and authentication windows, owner reassignment) against the real PostgreSQL
and localstripe, and checks the money invariants (money_invariants.py) after every step.

Isolation: each example runs inside its own savepoint, rolled back at its end, and builds its own
customers, cards, packages and line; localstripe keeps everything, so the processor checks read
only the PaymentIntents created after the example's marker intent, for the example's customers.
The beat runs synchronously: `run_dispatcher(enqueue=False)` then `charge_renewal` for each claim,
as `renewals_tick --inline` does; on-commit callbacks never run (the test's transaction never
commits), so nothing is handed to Celery.

Size (environment): FUZZ_MONEY_EXAMPLES, FUZZ_MONEY_STEPS (derandomized unless
FUZZ_MONEY_RANDOM=1), FUZZ_MONEY_SHRINK=1 to shrink a failure (on by default in `make fuzz-money`).
"""

from __future__ import annotations

import itertools
import os
import uuid
from datetime import timedelta

import stripe
import time_machine
from django.conf import settings as django_settings
from django.db import transaction
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from accounts.history import acting
from accounts.models import Line, Package
from accounts.services import line_status
from partner.services.usage import UsageInput, ingest_usage
from payments import gateways
from payments.models import Charge
from payments.services import methods, on_session, refunds, webhooks
from renewals.models import Renewal, RenewalRule, RetryPolicy
from renewals.services import charging, dispatcher, operator, rules, triggers
from tests.builders import GB, MB, make_line, make_package, make_user
from tests.payments.conftest import authenticate_as_browser, create_card
from tests.payments.test_webhooks import event_for, sign

from . import money_invariants as inv
from .fuzz import machine_settings

CARDS = {
    "good": "4242424242424242",
    "declining": "4000000000000341",  # attaches, then every charge is declined
    "3ds": "4000002500003155",  # every charge needs 3-D Secure
}
# Clock moves of one beat tick: inside the reconcile window, past it, past each retry delay, past
# the grace and the authentication window.
TICKS_MINUTES = [1, 11, 61, 6 * 60 + 1, 25 * 60, 3 * 24 * 60 + 1]
_ids = itertools.count(1)


class MoneyMachine(RuleBasedStateMachine):
    """One customer, one line with an auto-renewal rule, a second customer the operator may move
    the line to, three cards each for the first (good, declining, 3-D Secure), one for the second."""

    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = timezone.now().replace(microsecond=0)
        self._clock = time_machine.travel(self.now, tick=False)
        self._clock.start()
        self.world: inv.World | None = None

    # --- set-up -----------------------------------------------------------------------------------

    @initialize(
        default_card=st.sampled_from(sorted(CARDS)),
        overage_policy=st.sampled_from([p.value for p in RenewalRule.OveragePolicy]),
        remaining_mb=st.sampled_from([100, 600, 2048]),
    )
    def set_up(self, default_card="good", overage_policy="block", remaining_mb=600):
        policy = RetryPolicy.current()
        policy.retry_delays_minutes = [60, 360, 1440]
        policy.alert_after_failures = 3
        policy.grace_hours = 2
        policy.authentication_hours = 24
        policy.overage_price_per_gb_minor = 1000
        policy.save()
        n = next(_ids)
        self.packages = {
            "cny": make_package(name=f"1 GB CNY #{n}", data_allowance_bytes=1 * GB, price_minor=9800, currency="CNY"),
            "eur": make_package(name=f"2 GB EUR #{n}", data_allowance_bytes=2 * GB, price_minor=500, currency="EUR"),
        }
        self.users = {
            "alice": make_user(email=f"alice-{uuid.uuid4().hex[:10]}@example.com"),
            "bob": make_user(email=f"bob-{uuid.uuid4().hex[:10]}@example.com"),
        }
        self.clients = {}
        for name, user in self.users.items():
            client = Client()
            client.force_login(user)
            self.clients[name] = client
        self.cards: dict[str, dict[str, str]] = {"alice": {}, "bob": {}}
        customers = {}
        for name in self.users:
            customers[name] = gateways.ensure_customer(self.users[name]).id
        for card, number in CARDS.items():
            pm = gateways.attach_payment_method(customer_id=customers["alice"], payment_method_id=create_card(number))
            self.cards["alice"][card] = pm.id
        pm = gateways.attach_payment_method(customer_id=customers["bob"], payment_method_id=create_card(CARDS["good"]))
        self.cards["bob"]["good"] = pm.id
        gateways.set_default_payment_method(
            customer_id=customers["alice"], payment_method_id=self.cards["alice"][default_card]
        )
        gateways.set_default_payment_method(customer_id=customers["bob"], payment_method_id=self.cards["bob"]["good"])
        remaining = remaining_mb * MB
        self.line = make_line(
            owner=self.users["alice"],
            package=self.packages["cny"],
            data_remaining_bytes=remaining,
            data_used_bytes=400 * MB,
            expires_at=self.now + timedelta(days=10),
        )
        self.owner = "alice"
        RenewalRule.objects.create(
            line=self.line,
            package=self.packages["cny"],
            enabled=True,
            trigger_data_below_mb=500,
            overage_policy=overage_policy,
            overage_cap_mb=200,
            max_renewals_per_day=2,
        )
        self.endpoint = webhooks.configure_local_webhook_endpoint(base_url="http://testserver", register=False)
        marker = stripe.PaymentIntent.create(
            amount=100, currency="usd", metadata={"marker": "money-model"}, api_key=django_settings.STRIPE_SECRET_KEY
        )
        self.world = inv.World(
            line_id=self.line.pk,
            user_ids=[u.pk for u in self.users.values()],
            customer_ids=set(customers.values()),
            marker_payment_intent=marker["id"],
            initial_remaining=remaining,
            initial_used=400 * MB,
        )
        self.seen_intents: list[dict] = []  # snapshots for stale webhook deliveries
        self.operator = make_user(email=f"operator-{uuid.uuid4().hex[:10]}@example.com", is_staff=True)
        # The charge path runs in this example's transaction: nothing reaches a worker.
        triggers.evaluate_triggers(line_ids=[self.line.pk], now=self.now, dispatch=False)

    def teardown(self):
        try:
            self._clock.stop()
        finally:
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    # --- helpers --------------------------------------------------------------------------------

    def _line(self) -> Line:
        return Line.objects.get(pk=self.line.pk)

    def _latest_renewal(self) -> Renewal | None:
        return Renewal.objects.filter(line_id=self.line.pk).order_by("-created_at", "-id").first()

    def _method(self, card: str) -> str:
        cards = self.cards[self.owner]
        return cards.get(card) or cards["good"]

    def _post(self, who: str, url: str, data: dict | None = None):
        """A POST as the customer's browser. Logged in again each time: the clock moves by days and
        the session would expire, and a login redirect is not the step we mean to run."""
        client = self.clients[who]
        client.force_login(self.users[who])
        response = client.post(url, data or {})
        assert response.status_code in (200, 302, 400, 404), response.status_code
        assert "/login" not in response.get("Location", ""), response["Location"]
        return response

    def _intents(self) -> list[dict]:
        return inv.processor_view(self.world).intents

    # --- the customer -------------------------------------------------------------------------------

    @rule(mb=st.sampled_from([50, 300, 700, 1500]), resend_last=st.booleans())
    def usage(self, mb, resend_last=False):
        """A partner usage batch (the usage API's service); sometimes the partner re-sends the last record."""
        line = self._line()
        rule_row = RenewalRule.objects.filter(line_id=line.pk).first()
        # A re-send repeats the record unchanged, its period too: the record's identity is its id
        # with its start (docs/usage.md, "History"), whatever the clock says now.
        last = getattr(self, "_last_record", None) if resend_last else None
        if last is None:
            last = (f"rec-{uuid.uuid4().hex}", self.now - timedelta(minutes=5), self.now, mb * MB)
            self._expect_usage(line, rule_row, mb * MB)
        self._last_record = last
        record_id, start, end, used = last
        ingest_usage(
            records=[
                UsageInput(index=0, partner_record_id=record_id, iccid=line.iccid, bytes=used, start=start, end=end)
            ],
            now=self.now,
        )

    def _expect_usage(self, line, rule_row, used: int) -> None:
        """The bytes the design lets go unbilled (beyond zero under `block`, beyond the cap)."""
        available = max(line.data_remaining_bytes, 0)
        beyond = max(used - available, 0)
        if rule_row is None or rule_row.overage_policy == RenewalRule.OveragePolicy.BLOCK:
            self.world.policy_written_off += beyond
            return
        cap = (rule_row.overage_cap_mb or 0) * MB
        kept = min(line.overage_bytes + beyond, max(cap, line.overage_bytes))
        self.world.policy_written_off += line.overage_bytes + beyond - kept

    @rule(
        package=st.sampled_from(["cny", "eur"]),
        method=st.sampled_from(["", "good", "declining", "3ds"]),
        threshold_mb=st.sampled_from([100, 500, 4096]),
        enabled=st.booleans(),
    )
    def edit_rule(self, package, method, threshold_mb, enabled=True):
        """The customer confirms an edited rule (the confirmation page's service)."""
        values = {
            "enabled": enabled,
            "package": self.packages[package],
            "trigger_data_below_mb": threshold_mb,
            "payment_method_id": self._method(method) if method else "",
        }
        rules.save_rule(line=self._line(), values=values, now=self.now)

    @rule()
    def turn_rule_off(self):
        rule_row = RenewalRule.objects.get(line_id=self.line.pk)
        rules.turn_off_rule(rule=rule_row, now=self.now)

    @rule(card=st.sampled_from(["good", "declining", "3ds"]))
    def set_default_method(self, card):
        """The customer makes a card the default (wakes renewals waiting for a method)."""
        methods.set_default_method(user=self.users[self.owner], payment_method_id=self._method(card))

    @rule(package=st.sampled_from(["cny", "eur"]), card=st.sampled_from(["good", "declining", "3ds"]))
    def purchase(self, package, card):
        """The buy page, as the line's owner."""
        self._post(
            self.owner,
            reverse("payments:buy", args=[self.line.pk]),
            {"package": self.packages[package].pk, "payment_method": self._method(card)},
        )

    @rule(card=st.sampled_from(["good", "declining", "3ds"]))
    def pay_now(self, card):
        """The pay-now page for the line's latest renewal (another tab may hold an earlier attempt)."""
        renewal = self._latest_renewal()
        if renewal is None:
            return
        before = inv.schedule_of(renewal)
        last_charge = Charge.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        self._post(
            self.owner, reverse("payments:pay_renewal", args=[renewal.pk]), {"payment_method": self._method(card)}
        )
        new = list(Charge.objects.filter(pk__gt=last_charge, renewal=renewal).values_list("pk", flat=True))
        inv.check_declined_pay_now_left_the_cycle(before=before, renewal_id=renewal.pk, new_charge_ids=new)

    @rule(which=st.integers(0, 3), success=st.booleans(), come_back=st.booleans())
    def authenticate(self, which, success=True, come_back=True):
        """The customer answers the bank's 3-D Secure for one open intent (in any tab, at any time,
        late included), then maybe comes back to our page, which reads the intent back."""
        waiting = [pi for pi in self._intents() if pi["status"] in ("requires_action", "requires_confirmation")]
        if not waiting:
            return
        pi = waiting[which % len(waiting)]
        if authenticate_as_browser(pi["id"], pi["client_secret"], success=success).status_code == 200:
            self.world.settled_at_processor[pi["id"]] = self.now
        self._snapshot(pi["id"])
        charge_id = inv._meta(pi, "charge_id")
        if come_back and charge_id.isdigit():
            charge = Charge.objects.filter(pk=int(charge_id)).first()
            if charge is not None:
                owner = next(name for name, user in self.users.items() if user.pk == charge.user_id)
                self._post(owner, reverse("payments:complete", args=[charge.pk]))

    # --- the processor's webhooks ------------------------------------------------------------------

    def _snapshot(self, pi_id: str) -> None:
        pi = stripe.PaymentIntent.retrieve(pi_id, api_key=django_settings.STRIPE_SECRET_KEY)
        self.seen_intents.append(pi.to_dict_recursive() if hasattr(pi, "to_dict_recursive") else pi.to_dict())

    @rule(which=st.integers(0, 5), stale=st.booleans(), twice=st.booleans())
    def webhook(self, which, stale=False, twice=False):
        """A payment_intent event through dj-stripe's signed endpoint: for an intent as it is now, or
        an older snapshot of one (out of order); sometimes delivered twice."""
        current = self._intents()
        for pi in current:
            self._snapshot(pi["id"])
        pool = self.seen_intents if stale else self.seen_intents[-len(current) :] if current else []
        if not pool:
            return
        intent = pool[which % len(pool)]
        event_type = {
            "succeeded": "payment_intent.succeeded",
            "canceled": "payment_intent.canceled",
            "processing": "payment_intent.processing",
            "requires_action": "payment_intent.requires_action",
        }.get(intent["status"], "payment_intent.payment_failed")
        body = event_for(_Intent(intent), event_type, f"evt_{uuid.uuid4().hex}")
        url = reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": self.endpoint.djstripe_uuid})
        for _ in range(2 if twice else 1):
            response = Client().post(
                url, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(body, self.endpoint.secret)
            )
            assert response.status_code == 200, (response.status_code, response.content[:300])

    # --- the beat ---------------------------------------------------------------------------------

    @rule(minutes=st.sampled_from(TICKS_MINUTES))
    def tick(self, minutes):
        """Time passes; one beat tick runs the dispatcher and the charge step for every claim,
        and the purchases' reconciliation."""
        self._tick(minutes, processor_reachable=True)

    def _tick(self, minutes, *, processor_reachable: bool):
        self.now += timedelta(minutes=minutes)
        self._clock.stop()
        self._clock = time_machine.travel(self.now, tick=False)
        self._clock.start()
        report = dispatcher.run_dispatcher(now=self.now, enqueue=False)
        for renewal_id in report.requeued + report.claimed:
            try:
                charging.charge_renewal(renewal_id=renewal_id, now=self.now)
            except gateways.GatewayError:
                pass  # the task fails as a worker's would; the claim is requeued by a later tick
        # The payments sweep as beat runs it (payments.tasks.reconcile_pending_purchases): refunds
        # whose answer was lost, refunds owed (on-commit callbacks never run here), purchases.
        refunds.reconcile_refunds_in_doubt()
        refunds.refund_due_charges()
        on_session.reconcile_stale_purchases(now=self.now)
        if processor_reachable:
            # The bounds are witnessed by ticks that could reach the processor: reconciling or
            # withdrawing an intent cannot happen while it is unreachable.
            self.world.last_tick_at = self.now

    # --- the processor unreachable ------------------------------------------------------------------

    @rule(action=st.sampled_from(["pay_now", "turn_rule_off", "tick", "purchase"]))
    def while_processor_unreachable(self, action):
        """One step while the processor cannot be reached (a closed port, as
        tests/renewals/test_authentication.py does; no patching): our calls fail or time out,
        the customer's browser still reaches the bank in the steps after."""
        try:
            with override_settings(STRIPE_API_BASE="http://127.0.0.1:9", STRIPE_MAX_NETWORK_RETRIES=0):
                gateways.configure()
                if action == "pay_now":
                    self.pay_now(card="good")
                elif action == "turn_rule_off":
                    self.turn_rule_off()
                elif action == "tick":
                    self._tick(11, processor_reachable=False)
                else:
                    self.purchase(package="cny", card="good")
        finally:
            gateways.configure()

    # --- the operator -----------------------------------------------------------------------------

    @rule(
        price=st.sampled_from([500, 9800, 12000]),
        currency=st.sampled_from(["CNY", "EUR"]),
        package=st.sampled_from(["cny", "eur"]),
    )
    def edit_package(self, package, price, currency):
        """The operator edits a package's price and currency (the admin's change form saves the row)."""
        row = Package.objects.get(pk=self.packages[package].pk)
        row.price_minor, row.currency = price, currency
        with acting(self.operator, action="changed", reason="price change"):
            row.save()
        self.packages[package] = row

    @rule()
    def operator_suspend(self):
        if line_status.suspend_line(line_id=self.line.pk, reason="operator", actor=self.operator, now=self.now):
            self.world.operator_suspended = True

    @rule()
    def operator_resume(self):
        if line_status.resume_line(line_id=self.line.pk, reason="operator", actor=self.operator, now=self.now):
            self.world.operator_suspended = False
            self.world.operator_resumed_at = self.now

    @rule()
    def operator_terminate(self):
        """The operator terminates the line (the admin's confirmed action)."""
        line = self._line()
        if line.status == Line.Status.TERMINATED:
            return
        self.world.terminated = True
        self.world.operator_suspended = False
        self.world.paid_before_termination = set(
            Charge.objects.filter(line_id=line.pk, status__in=Charge.MONEY_TAKEN).values_list("pk", flat=True)
        )
        self.world.last_charge_id_at_termination = (
            Charge.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        )
        assert line_status.terminate_line(line_id=line.pk, reason="terminated", actor=self.operator, now=self.now)

    @rule()
    def operator_retry_now(self):
        renewal = self._latest_renewal()
        if renewal is not None:
            operator.retry_now(renewal_id=renewal.pk, now=self.now)

    @rule(which=st.integers(0, 5), partial=st.booleans())
    def operator_refund(self, which, partial=False):
        charges = list(
            Charge.objects.filter(user_id__in=self.world.user_ids, status=Charge.Status.SUCCEEDED).order_by("pk")
        )
        if not charges:
            return
        charge = charges[which % len(charges)]
        left = charge.amount_minor - charge.refunded_minor
        amount = max(left // 2, 1) if partial else None
        refunds.refund_charge(charge_id=charge.pk, amount_minor=amount, operator=self.operator)

    @rule()
    def reassign_owner(self):
        """The operator moves the line to the other customer (the admin's change form)."""
        self.owner = "bob" if self.owner == "alice" else "alice"
        line = self._line()
        line.owner = self.users[self.owner]
        with acting(self.operator, action="changed", reason="owner moved"):
            line.save()

    # --- invariants ---------------------------------------------------------------------------------

    def check_all(self) -> None:
        """Every invariant, as after each hypothesis step (the regression tests call this)."""
        if self.world is None:
            return
        inv.remember_terms(self.world)
        view = inv.processor_view(self.world)
        inv.check_one_kept_success_per_renewal(self.world, view)
        inv.check_ledger_matches_processor(self.world, view)
        inv.check_network_matches_line(self.world)
        inv.check_line_usable_when_paid(self.world)
        inv.check_bytes_conserved(self.world)
        inv.check_charges_match_frozen_terms(self.world, view)
        inv.check_bounds(self.world, view)
        inv.check_termination(self.world)

    @invariant()
    def money_invariants(self):
        self.check_all()


class _Intent(dict):
    """A snapshot dict with the method event_for() calls on a Stripe object."""

    def to_dict(self):
        return dict(self)


def test_money_model(db, money_settings):
    examples = int(os.environ.get("FUZZ_MONEY_EXAMPLES", "25"))
    steps = int(os.environ.get("FUZZ_MONEY_STEPS", "25"))
    run_state_machine_as_test(
        MoneyMachine,
        settings=machine_settings(
            env_prefix="FUZZ_MONEY", database_dir=".hypothesis/money-model", examples=examples, steps=steps
        ),
    )
