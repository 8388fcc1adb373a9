"""`make chaos`: lines cross their renewal thresholds while a controller breaks things at random
(seeded, printed) moments and customers with bad cards, 3-D Secure and pay-now buttons act, then
everything settles and the invariants are checked against localstripe's own lists of
PaymentIntents and refunds. Loopback only, bounded in time.

What it does, exactly:
- its own Redis (so it may kill and restart it), 2 Celery workers (solo pool: a SIGKILL kills
  the process doing the charge), 1 beat ticking the dispatcher every 2 s, and an aiohttp
  fault-injecting proxy between the workers and localstripe (STRIPE_API_BASE points at it; the
  customers and the checks talk to localstripe directly);
- N customers, each with a line 100 MB above its 500 MB threshold and a default card chosen by
  their plan (seeded, printed; every plan below at least once, then about half good cards): good
  (4242 4242 4242 4242), declining (4000 0000 0000 0341: attaches, every charge declined) or
  3-D Secure (4000 0025 0000 3155: every confirmation, off-session too, needs the bank). During
  the chaos window each line gets a usage batch (partner.services.usage.ingest_usage, the partner
  endpoint's code) that takes it below the threshold, spread over the first 80% of the window;
- the controller, every 2-5 s, does one of: SIGKILL a worker and restart it 1-3 s later; SIGKILL
  Redis and restart it on the same port 1-3 s later; start a second beat (two beats tick for a
  while) or stop one; switch the proxy to the next fault (in turn) for 3-8 s, on half the requests: `500` (not
  forwarded), `500_after` (forwarded, then 500: the charge happened), `429` (not forwarded),
  `timeout` (forwarded, answer held past the client's 3 s time-out), `drop` (forwarded, then the
  connection is closed with no answer);
- the customers (class Customers), once their renewal needs them, through the portal's own
  service calls (renewals.services.pay_now.payable_renewal + start_pay_now as the pay page calls them,
  complete_authentication as the 3-D Secure return page does) and localstripe's browser endpoint
  for the bank's answer (POST /v1/payment_intents/<id>/_authenticate): declining customers let the
  retries run out, or pay now with a new good card (from one tab, or two at once) at a random
  moment of the retry cycle (before the next off-session attempt, while it runs, or after the line
  was suspended; a refused pay-now, "payment in flight", is tried again until paid), or pay now with
  the declining card; 3-D Secure customers authenticate in time (and come back to our page, or
  not), abandon, authenticate late (after the window: the engine withdrew the intent), pay now with
  a new good card, or pay now while authenticating the old intent in another tab at the same time;
- settle: faults off, 2 workers and 1 beat up, the payments sweep (refunds in doubt, refunds due,
  stale purchases: payments.tasks.reconcile_pending_purchases) run here every second, until every
  renewal is final, every charge settled (nothing pending, waiting for the bank or owed back),
  every failed cycle's line suspended and every customer done, or --settle seconds.
Checks (exit status 1 if one fails), against localstripe's PaymentIntents and refunds: every
renewal final, or waiting with an alert; at most one kept (not refunded) succeeded PaymentIntent
per renewal, and every success given back has a paid-after-closed alert; ledger = processor per
currency, net of refunds (succeeded/refunded/refund-due Charge rows minus what they refunded =
succeeded PaymentIntents minus their refunds) and gross; no suspended line whose cycle was paid;
every failed cycle's line suspended; every customer's line as the policy says (money kept for the
cycle: succeeded and not suspended; none: failed and suspended; a good card: paid); every 3-D
Secure the bank accepted paid its renewal; no customer's action raised. A table of what the
customers did (declines, 3-D Secure completed / abandoned / late, pay-now races, successes given
back) and of outcomes per plan is printed.

Settings for the run (env of the workers and beat, and this process): RENEWALS_DISPATCH_INTERVAL_SECONDS=2,
RENEWALS_RECONCILE_AFTER_MINUTES=1 (unknown outcomes are looked up after a minute),
STRIPE_HTTP_TIMEOUT_SECONDS=3, RENEWALS_AUTHENTICATION_WINDOW_SECONDS=30 (a renewal waiting for
3-D Secure fails, and its line is suspended, 30 s after the bank asked); retry policy delays 0 and
1 minutes (three attempts: a declining card's cycle fails about a minute after its first decline),
no grace before suspension.

    scripts/with-services .venv/bin/python -m bench.chaos [--lines 200 --duration 60 --settle 300 --seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

from . import common

FAULTS = ("500", "500_after", "429", "timeout", "drop")
RETRY_DELAYS_MINUTES = (0, 1)
AUTHENTICATION_WINDOW_SECONDS = 30


# --- the fault-injecting proxy ----------------------------------------------------------------


def _proxy_main(port: int, upstream: str, ready) -> None:
    from aiohttp import ClientSession, ClientTimeout, web

    state = {"mode": "", "p": 0.0, "counts": Counter()}
    rng = random.Random(7)

    async def control(request):
        if request.method == "POST":
            state["mode"] = request.query.get("mode", "")
            state["p"] = float(request.query.get("p", "0.5"))
        return web.json_response({"mode": state["mode"], "counts": dict(state["counts"])})

    async def forward(request, session):
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with session.request(request.method, upstream + request.path_qs, data=body, headers=headers) as up:
            data = await up.read()
            out_headers = {
                k: v
                for k, v in up.headers.items()
                if k.lower() in ("content-type", "request-id", "idempotency-key", "stripe-version")
            }
            return web.Response(status=up.status, body=data, headers=out_headers)

    async def handle(request):
        session = request.app["session"]
        mode = state["mode"]
        if not mode or rng.random() >= state["p"]:
            state["counts"]["passed"] += 1
            return await forward(request, session)
        state["counts"][mode] += 1
        error = {"error": {"type": "api_error", "message": f"chaos {mode}"}}
        if mode == "500":
            return web.json_response(error, status=500)
        if mode == "429":
            return web.json_response({"error": {"type": "rate_limit_error", "message": "chaos 429"}}, status=429)
        response = await forward(request, session)
        if mode == "500_after":
            return web.json_response(error, status=500)
        if mode == "timeout":
            await asyncio.sleep(6)
            return response
        # drop: the processor did the work; the client never hears of it.
        request.transport.close()
        raise asyncio.CancelledError()

    async def on_startup(app):
        app["session"] = ClientSession(timeout=ClientTimeout(total=30))

    async def on_cleanup(app):
        await app["session"].close()

    app = web.Application()
    app.router.add_route("*", "/__chaos__", control)
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    ready.set()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, handle_signals=True)


def proxy_control(port: int, mode: str = "", p: float = 0.5) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/__chaos__?mode={mode}&p={p}", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# --- processes ------------------------------------------------------------------------------------


class Fleet:
    """The processes the controller may kill: its Redis, workers and beats. Only these."""

    def __init__(
        self, *, redis_port: int, proxy_port: int, log_dir, authentication_window: float = AUTHENTICATION_WINDOW_SECONDS
    ):
        self.redis_port, self.proxy_port, self.log_dir = redis_port, proxy_port, log_dir
        self.redis = None
        self.workers: dict[str, subprocess.Popen | None] = {"w1": None, "w2": None}
        self.beats: dict[str, subprocess.Popen | None] = {"b1": None, "b2": None}
        self.env = common.child_env(
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
            STRIPE_API_BASE=f"http://127.0.0.1:{proxy_port}",
            STRIPE_HTTP_TIMEOUT_SECONDS="3",
            RENEWALS_DISPATCH_INTERVAL_SECONDS="2",
            RENEWALS_RECONCILE_AFTER_MINUTES="1",
            RENEWALS_AUTHENTICATION_WINDOW_SECONDS=str(int(authentication_window)),
        )

    def _log(self, name):
        return open(self.log_dir / f"chaos-{name}.log", "ab")

    def start_redis(self):
        self.redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.log_dir),
            ],
            stdout=self._log("redis"),
            stderr=subprocess.STDOUT,
        )
        common.wait_for_port(self.redis_port, process=self.redis)

    def start_worker(self, name):
        self.workers[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "esimsite",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"chaos-{name}-{os.getpid()}@%h",
            ],
            cwd=common.ROOT,
            env=self.env,
            stdout=self._log(name),
            stderr=subprocess.STDOUT,
        )

    def start_beat(self, name):
        self.beats[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "esimsite",
                "beat",
                "--loglevel=INFO",
                "--schedule",
                str(self.log_dir / f"chaos-{name}-schedule"),
            ],
            cwd=common.ROOT,
            env=self.env,
            stdout=self._log(name),
            stderr=subprocess.STDOUT,
        )

    @staticmethod
    def kill(process, sig=signal.SIGKILL):
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait()

    def all(self):
        return [self.redis, *self.workers.values(), *self.beats.values()]

    def stop_all(self):
        for process in self.all():
            if process is not None and process.poll() is None:
                common.stop(process)


# --- customers: declining cards, 3-D Secure and pay-now ---------------------------------------------

GOOD_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000341"  # localstripe: attaches, then every charge is declined (card_declined)
THREE_DS_CARD = "4000002500003155"  # localstripe: every confirmation asks for 3-D Secure (requires_action)
# What each kind of customer does once their renewal needs them (weights per 100 customers).
PLANS = {
    ("good", ""): 50,
    ("declining", "nothing"): 6,  # lets the retries run out: the line is suspended
    ("declining", "pay_good"): 6,  # pays now with a new good card, at a random moment of the retry cycle
    ("declining", "pay_good_2tabs"): 5,  # the same from two tabs at once
    ("declining", "pay_declining"): 4,  # pays now with the declining card (declined; the cycle goes on)
    ("3ds", "complete"): 6,  # authenticates at the bank in time and comes back to our page
    ("3ds", "complete_no_return"): 3,  # authenticates in time, never comes back (the engine's look-up finds it)
    ("3ds", "abandon"): 4,  # never authenticates: the window passes, the line is suspended
    ("3ds", "late"): 4,  # authenticates after the window (the intent was withdrawn: refused)
    ("3ds", "pay_good"): 6,  # pays now with a new good card while the renewal waits for them
    ("3ds", "pay_good_and_complete"): 6,  # pays now in one tab and authenticates the old intent in another, at once
}
CARDS = {"good": GOOD_CARD, "declining": DECLINING_CARD, "3ds": THREE_DS_CARD}


def plans_for(lines: int, seed: int) -> dict[int, tuple[str, str]]:
    """Customer n's (card kind, behaviour): every non-good plan once first (a tiny run meets each),
    then drawn by weight; seeded."""
    rng = random.Random(f"plans-{seed}")
    kinds = list(PLANS)
    first = [k for k in kinds if k[0] != "good"]
    rng.shuffle(first)
    plans = {}
    for n in range(1, lines + 1):
        plans[n] = first[n - 1] if n <= len(first) else rng.choices(kinds, weights=list(PLANS.values()))[0]
    return plans


class Customers:
    """The customers of the plans, acting in this process through the portal's own service functions
    (renewals.services.pay_now.pay_renewal_now as the pay page calls it, complete_authentication as the return
    page does) and the bank's 3-D Secure answer through localstripe's browser endpoint. Direct to
    localstripe, not through the proxy (the browser's path). Seeded per customer; what happened is
    recorded for the checks (`paid`: the customer's own payment the processor took)."""

    def __init__(self, *, plans, line_ids, seed: int, window: float, stop_after: float):
        from concurrent.futures import ThreadPoolExecutor

        self.plans = plans
        self.line_of = {n: line_ids[n - 1] for n in plans}
        self.seed, self.window = seed, window
        self.stop_after = stop_after  # monotonic time after which persistent payers give up
        self.pool = ThreadPoolExecutor(6)
        self.waiting = {n for n, plan in plans.items() if plan[0] != "good"}  # not yet acted
        self.scheduled: list[tuple[float, int]] = []
        self.futures = []
        self.events: Counter = Counter()
        self.accepted_authentications: dict[int, str] = {}  # n -> intent id the bank (localstripe) accepted
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def rng(self, n: int, what: str) -> random.Random:
        return random.Random(f"{self.seed}-{n}-{what}")

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.events[key] += n

    def idle(self) -> bool:
        return not self.scheduled and all(f.done() for f in self.futures)

    def tick(self) -> None:
        """Notice renewals that need their customer; start what is due."""
        from payments.models import Charge
        from renewals.models import Renewal

        now = time.monotonic()
        if self.waiting:
            lines = {self.line_of[n]: n for n in self.waiting}
            needing = {}
            for line_id, failures, status in Renewal.objects.filter(line_id__in=list(lines)).values_list(
                "line_id", "failures", "status"
            ):
                n = lines[line_id]
                if self.plans[n][0] == "declining" and (failures >= 1 or status == Renewal.Status.FAILED):
                    needing[n] = True
            for line_id in Charge.objects.filter(
                line_id__in=list(lines), renewal__isnull=False, on_session=False, status=Charge.Status.REQUIRES_ACTION
            ).values_list("line_id", flat=True):
                needing[lines[line_id]] = True
            for n in needing:
                self.waiting.discard(n)
                kind, behaviour = self.plans[n]
                rng = self.rng(n, "when")
                if behaviour in ("nothing", "abandon"):
                    self.count(f"{kind}_{behaviour}")
                    continue
                if kind == "declining":
                    # Anywhere in the retry cycle: before the next off-session attempt, while it runs,
                    # or after the cycle failed and the line was suspended.
                    delay = rng.uniform(0, 75)
                elif behaviour == "late":
                    delay = self.window + rng.uniform(8, 20)
                else:
                    delay = rng.uniform(1, self.window * 0.4)
                self.scheduled.append((now + delay, n))
        for when, n in list(self.scheduled):
            if now >= when:
                self.scheduled.remove((when, n))
                self.futures.append(self.pool.submit(self._act, n))

    # --- what a customer does ---------------------------------------------------------------

    def _act(self, n: int) -> None:
        from django.db import connection

        kind, behaviour = self.plans[n]
        try:
            if behaviour in ("complete", "complete_no_return", "late"):
                self._authenticate(
                    n, come_back=behaviour != "complete_no_return", label="late" if behaviour == "late" else "completed"
                )
            elif behaviour == "pay_declining":
                self._pay_now(n, card=None, tabs=1)
            elif behaviour == "pay_good":
                self._pay_until_paid(n, tabs=1)
            elif behaviour == "pay_good_2tabs":
                self._pay_until_paid(n, tabs=2)
            elif behaviour == "pay_good_and_complete":
                self._pay_until_paid(n, tabs=1, authenticate_too=True)
        except Exception as exc:  # a customer's error is a finding: printed and failed in the checks
            self.errors.append(f"customer {n} {kind}/{behaviour}: {type(exc).__name__}: {exc}")
        finally:
            connection.close()

    def _user(self, n: int):
        from accounts.models import User

        return User.objects.get(email=f"bench{n}@example.com")

    def _renewal(self, n: int):
        from renewals.models import Renewal

        return Renewal.objects.filter(line_id=self.line_of[n]).order_by("-created_at", "-id").first()

    def _authenticate(self, n: int, *, come_back: bool, label: str) -> bool:
        """The bank's 3-D Secure page for the off-session intent, answered 'complete', as the Stripe.js
        stand-in posts it; then maybe back on our return page."""
        import requests
        import stripe
        from django.conf import settings

        from payments.models import Charge
        from payments.services import on_session

        charge = (
            Charge.objects.filter(line_id=self.line_of[n], renewal__isnull=False, on_session=False)
            .exclude(payment_intent_id__isnull=True)
            .exclude(payment_intent_id="")
            .order_by("-id")
            .first()
        )
        if charge is None:
            self.count(f"3ds_{label}_no_intent")
            return False
        intent = stripe.PaymentIntent.retrieve(charge.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY)
        response = requests.post(
            f"{settings.STRIPE_API_BASE}/v1/payment_intents/{intent['id']}/_authenticate?success=true",
            json={"key": settings.STRIPE_PUBLISHABLE_KEY, "client_secret": intent["client_secret"]},
            timeout=30,
        )
        accepted = response.status_code == 200
        if accepted:
            with self.lock:
                self.accepted_authentications[n] = intent["id"]
        self.count(f"3ds_{label}_{'accepted' if accepted else 'refused'}")
        if come_back:
            on_session.complete_authentication(user=self._user(n), charge_id=charge.pk)
        return accepted

    def _good_card(self, n: int) -> str:
        """A new good card, added on-session (not made the default)."""
        import stripe
        from django.conf import settings

        from payments import gateways

        user = self._user(n)
        customer = gateways.ensure_customer(user)
        pm = stripe.PaymentMethod.create(
            type="card",
            card={"number": GOOD_CARD, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            api_key=settings.STRIPE_SECRET_KEY,
        )
        gateways.attach_payment_method(customer_id=customer.id, payment_method_id=pm["id"])
        return pm["id"]

    def _pay_now(self, n: int, *, card: str | None, tabs: int, authenticate_too: bool = False) -> list[str]:
        """What the pay page does (payable_renewal, then start_pay_now), from `tabs` tabs at once
        (plus the bank's page for the old intent, if authenticate_too). Outcomes, one per tab."""
        from django.db import connection

        from payments import gateways
        from payments.services import errors
        from renewals.models import Renewal
        from renewals.services import pay_now

        user = self._user(n)
        method = card or gateways.default_payment_method_id(user)
        renewal = self._renewal(n)
        before = renewal.status
        if before in (Renewal.Status.RETRY_SCHEDULED, Renewal.Status.CHARGING, Renewal.Status.DUE):
            self.count("pay_now_during_retry_cycle")
        barrier = threading.Barrier(tabs + (1 if authenticate_too else 0))
        outcomes: list[str] = []

        def tab():
            try:
                barrier.wait(10)
                try:
                    payable = pay_now.payable_renewal(user=user, renewal_id=renewal.pk)
                    charge = pay_now.pay_renewal_now(user=user, renewal=payable, payment_method_id=method)
                    outcomes.append(charge.status)
                except errors.PaymentError as exc:
                    outcomes.append(f"refused_{exc.code}")
            finally:
                connection.close()

        def bank():
            try:
                barrier.wait(10)
                self._authenticate(n, come_back=True, label="raced")
            finally:
                connection.close()

        threads = [threading.Thread(target=tab) for _ in range(tabs)]
        if authenticate_too:
            threads.append(threading.Thread(target=bank))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.count("pay_now_attempts", tabs)
        if tabs > 1:
            self.count("pay_now_two_tab_races")
        if authenticate_too:
            self.count("pay_now_vs_authentication_races")
        for outcome in outcomes:
            self.count(f"pay_now_{'good' if card else 'declining'}_{outcome}")
        return outcomes

    def _pay_until_paid(self, n: int, *, tabs: int, authenticate_too: bool = False) -> None:
        """A customer with a good new card keeps coming back (a payment in flight, a renewal being
        charged) until the renewal is paid, or the run ends."""
        from renewals.models import Renewal

        card = self._good_card(n)
        rng = self.rng(n, "again")
        first = True
        while time.monotonic() < self.stop_after:
            renewal = self._renewal(n)
            if renewal.status == Renewal.Status.SUCCEEDED:
                return
            outcomes = self._pay_now(
                n, card=card, tabs=tabs if first else 1, authenticate_too=authenticate_too and first
            )
            first = False
            if "succeeded" in outcomes:
                return
            time.sleep(rng.uniform(2, 5))
        self.count("pay_now_gave_up")


# --- the run --------------------------------------------------------------------------------------


def run(
    *,
    lines: int = 200,
    duration: float = 60.0,
    settle: float = 300.0,
    seed: int = 1,
    redis_port: int | None = None,
    window: float = AUTHENTICATION_WINDOW_SECONDS,
) -> dict:
    import stripe
    from django.conf import settings

    from accounts.models import Line
    from partner.services.usage import UsageInput, ingest_usage
    from payments import gateways
    from payments.models import Charge
    from payments.services import on_session
    from payments.services import refunds as payments_refunds
    from renewals.models import Alert, Renewal, RetryPolicy

    rng = random.Random(seed)
    policy = RetryPolicy.current()
    # Two quick attempts, then one a minute later: a declining card's cycle fails (and its line is
    # suspended, no grace) about a minute after its first decline, with time for pay-now races.
    policy.retry_delays_minutes = list(RETRY_DELAYS_MINUTES)
    policy.grace_hours = 0
    policy.save()
    settings.RENEWALS_AUTHENTICATION_WINDOW = timedelta(seconds=window)  # this process's customers (the fleet: its env)
    plans = plans_for(lines, seed)
    with common.timed() as t:
        line_ids = common.customers_with_cards(
            count=lines, data_remaining_bytes=600 * common.MB, card_for=lambda n: CARDS[plans[n][0]]
        )
    print(f"   {lines} customers with a default card, line 100 MB above its threshold: {t():.1f} s")
    print(
        f"   customers' plans (seed {seed}): "
        + ", ".join(
            f"{kind}/{behaviour or '-'} {count}" for (kind, behaviour), count in sorted(Counter(plans.values()).items())
        )
    )
    print(f"   policy: retry delays {RETRY_DELAYS_MINUTES} min, grace 0 h, 3-D Secure window {window:.0f} s")

    common.OUT_DIR.mkdir(parents=True, exist_ok=True)
    proxy_port = common.free_port()
    ready = multiprocessing.get_context("fork").Event()
    proxy = multiprocessing.get_context("fork").Process(
        target=_proxy_main, args=(proxy_port, settings.STRIPE_API_BASE.rstrip("/"), ready), daemon=True
    )
    proxy.start()
    assert ready.wait(30)
    common.wait_for_port(proxy_port)
    fleet = Fleet(
        redis_port=redis_port or common.free_port(),
        proxy_port=proxy_port,
        log_dir=common.OUT_DIR,
        authentication_window=window,
    )
    events: Counter = Counter()
    customers = None
    try:
        fleet.start_redis()
        # This process kicks renewals as the partner endpoint does: through the fleet's Redis.
        from esimsite.celery import app

        app.conf.broker_url = fleet.env["CELERY_BROKER_URL"]
        fleet.start_worker("w1")
        fleet.start_worker("w2")
        fleet.start_beat("b1")
        time.sleep(3)

        start = time.monotonic()
        customers = Customers(
            plans=plans, line_ids=line_ids, seed=seed, window=window, stop_after=start + duration + settle
        )
        next_customers_tick = start
        pending_restarts: list[tuple[float, str]] = []
        next_event = start + rng.uniform(2, 5)
        fault_until = 0.0
        fault_start = rng.randrange(len(FAULTS))
        period = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
        sent = 0
        while time.monotonic() - start < duration:
            now = time.monotonic()
            # Lines cross their thresholds at an even pace over the first 80% of the window.
            due_sent = min(lines, int((now - start) / (duration * 0.8) * lines) + 1)
            while sent < due_sent:
                sent += 1
                try:
                    ingest_usage(
                        records=[
                            UsageInput(
                                index=0,
                                partner_record_id=f"chaos-{sent}",
                                iccid=common.iccid(sent),
                                bytes=200 * common.MB,
                                start=period,
                                end=period,
                            )
                        ]
                    )
                except Exception as exc:  # the partner would retry the batch: so do we, below
                    events["ingest_error"] += 1
                    print(f"   ! ingest of line {sent} failed ({type(exc).__name__}); retried later")
                    sent -= 1
                    break
            if now >= next_customers_tick:
                customers.tick()
                next_customers_tick = now + 0.5
            for when, what in list(pending_restarts):
                if now >= when:
                    pending_restarts.remove((when, what))
                    if what == "redis":
                        fleet.start_redis()
                    else:
                        fleet.start_worker(what)
                    events[f"restart_{what[:1]}"] += 1
            if fault_until and now >= fault_until:
                proxy_control(proxy_port, "")
                fault_until = 0.0
            if now >= next_event:
                next_event = now + rng.uniform(2, 5)
                kind = rng.choice(["kill_worker", "kill_redis", "beats", "fault", "fault"])
                if kind == "kill_worker":
                    name = rng.choice(
                        [n for n, p in fleet.workers.items() if p is not None and p.poll() is None] or ["w1"]
                    )
                    fleet.kill(fleet.workers[name])
                    pending_restarts.append((now + rng.uniform(1, 3), name))
                    events["sigkill_worker"] += 1
                    print(f"   t={now - start:5.1f}s SIGKILL worker {name}")
                elif kind == "kill_redis" and not any(w == "redis" for _, w in pending_restarts):
                    fleet.kill(fleet.redis)
                    pending_restarts.append((now + rng.uniform(1, 3), "redis"))
                    events["sigkill_redis"] += 1
                    print(f"   t={now - start:5.1f}s SIGKILL redis")
                elif kind == "beats":
                    running = [n for n, p in fleet.beats.items() if p is not None and p.poll() is None]
                    if len(running) == 2:
                        victim = rng.choice(running)
                        fleet.kill(fleet.beats[victim], signal.SIGTERM)
                        events["beat_stopped"] += 1
                        print(f"   t={now - start:5.1f}s stop beat {victim} (one beat left)")
                    else:
                        other = "b2" if running == ["b1"] else "b1"
                        fleet.start_beat(other)
                        events["second_beat"] += 1
                        print(f"   t={now - start:5.1f}s start beat {other}: two beats tick")
                elif kind == "fault" and not fault_until:
                    # In turn, from a random start: a run with five fault windows meets every kind.
                    mode = FAULTS[(fault_start + events["fault_windows"]) % len(FAULTS)]
                    events["fault_windows"] += 1
                    proxy_control(proxy_port, mode, 0.5)
                    fault_until = now + rng.uniform(3, 8)
                    events[f"fault_{mode}"] += 1
                    print(
                        f"   t={now - start:5.1f}s proxy fault {mode} on half the requests for {fault_until - now:.1f}s"
                    )
            time.sleep(0.05)
        while sent < lines:  # the window ended before every line crossed (ingest errors): finish
            sent += 1
            ingest_usage(
                records=[
                    UsageInput(
                        index=0,
                        partner_record_id=f"chaos-{sent}",
                        iccid=common.iccid(sent),
                        bytes=200 * common.MB,
                        start=period,
                        end=period,
                    )
                ]
            )

        # Settle: faults off, everything up.
        proxy_control(proxy_port, "")
        if fleet.redis.poll() is not None:
            fleet.start_redis()
        for name, process in fleet.workers.items():
            if process is None or process.poll() is not None:
                fleet.start_worker(name)
        running = [n for n, p in fleet.beats.items() if p is not None and p.poll() is None]
        if not running:
            fleet.start_beat("b1")
        elif len(running) == 2:
            fleet.kill(fleet.beats["b2"], signal.SIGTERM)
        print(f"   chaos window over after {time.monotonic() - start:.0f} s; settling (at most {settle:.0f} s)")
        final = (Renewal.Status.SUCCEEDED, Renewal.Status.FAILED, Renewal.Status.CANCELLED)
        unsettled_charges = (Charge.Status.PENDING, Charge.Status.REQUIRES_ACTION, Charge.Status.REFUND_DUE)

        def settled_now() -> bool:
            customers.tick()
            # The payments sweep (payments.tasks.reconcile_pending_purchases, every 5 min on beat):
            # refunds owed for money taken after its cycle closed, and refunds in doubt, until done.
            try:
                payments_refunds.reconcile_refunds_in_doubt()
                payments_refunds.refund_due_charges()
                on_session.reconcile_stale_purchases()
            except Exception as exc:  # the processor is reachable here; an error is printed, retried
                print(f"   ! payments sweep: {type(exc).__name__}: {exc}")
            renewals = Renewal.objects.filter(line_id__in=line_ids)
            return (
                renewals.count() >= lines
                and not renewals.exclude(status__in=final)
                .exclude(status=Renewal.Status.AWAITING_METHOD, alerts__isnull=False)
                .exists()
                and not renewals.filter(status=Renewal.Status.FAILED, line_suspended_at__isnull=True).exists()
                and not Charge.objects.filter(status__in=unsettled_charges).exists()
                and not Charge.objects.filter(refund_in_doubt_since__isnull=False).exists()
                and customers.idle()
            )

        settle_start = time.monotonic()
        settled = common.wait_until(settled_now, timeout=settle, interval=1.0)
        print(f"   settled: {settled} after {time.monotonic() - settle_start:.0f} s")
        proxy_counts = proxy_control(proxy_port, "")["counts"]
    finally:
        if customers is not None:
            customers.stop_after = 0.0
            customers.pool.shutdown(wait=True)
        fleet.stop_all()
        proxy.terminate()
        proxy.join(10)

    # --- checks, against localstripe's own lists (directly, not through the proxy) -----------------
    statuses = Counter(Renewal.objects.filter(line_id__in=line_ids).values_list("status", flat=True))
    renewals_count = sum(statuses.values())
    key = settings.STRIPE_SECRET_KEY
    intents = list(stripe.PaymentIntent.list(limit=100, api_key=key).auto_paging_iter())
    refunds = list(stripe.Refund.list(limit=100, api_key=key).auto_paging_iter())
    refunded_by_charge: Counter = Counter()

    def field(obj, name):  # stripe 15's objects are not dicts; an expanded object stands for its id
        value = gateways._get(obj, name)
        return gateways._get(value, "id", value) if value is not None and not isinstance(value, (str, int)) else value

    for refund in refunds:
        if (field(refund, "status") or "succeeded") not in ("failed", "canceled"):
            refunded_by_charge[field(refund, "charge")] += int(field(refund, "amount"))
    succeeded_by_renewal: Counter = Counter()
    kept_by_renewal: Counter = Counter()
    refunded_intents: list[tuple[str, str]] = []  # (renewal id, intent id) of successes given back
    processor_gross: Counter = Counter()
    processor_net: Counter = Counter()
    for pi in intents:
        if field(pi, "status") != "succeeded":
            continue
        renewal_id = gateways._get(gateways._get(pi, "metadata"), "renewal_id")
        refunded = refunded_by_charge[field(pi, "latest_charge")]
        succeeded_by_renewal[renewal_id] += 1
        processor_gross[pi["currency"].upper()] += pi["amount"]
        processor_net[pi["currency"].upper()] += pi["amount"] - refunded
        if refunded >= pi["amount"]:
            refunded_intents.append((renewal_id, pi["id"]))
        else:
            kept_by_renewal[renewal_id] += 1
    doubled = {rid: n for rid, n in kept_by_renewal.items() if n > 1}
    alerted = {
        str(r) for r in Alert.objects.filter(kind=Alert.Kind.PAID_AFTER_CLOSED).values_list("renewal_id", flat=True)
    }
    refunds_without_alert = [pi for rid, pi in refunded_intents if rid not in alerted]
    ledger_gross: Counter = Counter()
    ledger_net: Counter = Counter()
    for currency, amount, refunded in Charge.objects.filter(
        status__in=(Charge.Status.SUCCEEDED, Charge.Status.REFUNDED, Charge.Status.REFUND_DUE)
    ).values_list("currency", "amount_minor", "refunded_minor"):
        ledger_gross[currency.upper()] += amount
        ledger_net[currency.upper()] += amount - refunded
    charge_statuses = Counter(Charge.objects.values_list("status", flat=True))

    # Each line's last cycle, its line's status, and whether the processor kept money for it.
    latest = {}
    for renewal in (
        Renewal.objects.filter(line_id__in=line_ids).select_related("line").order_by("line_id", "created_at", "id")
    ):
        latest[renewal.line_id] = renewal
    alerts_by_renewal = set(Alert.objects.filter(renewal__line_id__in=line_ids).values_list("renewal_id", flat=True))
    suspended = Line.Status.SUSPENDED
    by_line = {line_id: n for n, line_id in enumerate(line_ids, start=1)}
    suspended_but_paid, unsuspended_failures, wrong_outcome, waiting_without_alert = [], [], [], []
    outcomes: Counter = Counter()
    for line_id, renewal in latest.items():
        n = by_line[line_id]
        kind, behaviour = plans[n]
        paid = kept_by_renewal[str(renewal.pk)] >= 1
        status, line_status = renewal.status, renewal.line.status
        outcomes[(kind, behaviour or "-", status, line_status)] += 1
        if line_status == suspended and status == Renewal.Status.SUCCEEDED:
            suspended_but_paid.append(n)
        if status == Renewal.Status.FAILED and line_status != suspended:
            unsuspended_failures.append(n)
        if status not in final and renewal.pk not in alerts_by_renewal:
            waiting_without_alert.append(n)
        # What the policy says must have become of this customer, from what the processor kept.
        if paid:
            ok = status == Renewal.Status.SUCCEEDED and line_status != suspended
        elif kind == "good":
            ok = False  # a good card is always paid in the end
        else:
            ok = status == Renewal.Status.FAILED and line_status == suspended
        if not ok:
            wrong_outcome.append((n, kind, behaviour, status, line_status, paid))
    accepted_unpaid = [
        n
        for n, pi in customers.accepted_authentications.items()
        if kept_by_renewal[str(latest[line_ids[n - 1]].pk)] < 1
    ]
    not_final = renewals_count - sum(statuses[s] for s in final)
    checks = {
        "every line has a renewal": renewals_count >= lines,
        "every renewal final, or waiting with an alert": not waiting_without_alert,
        "<= 1 kept succeeded PaymentIntent per renewal": not doubled,
        "every success given back has a paid-after-closed alert": not refunds_without_alert,
        "ledger = processor per currency, net of refunds": ledger_net == processor_net,
        "ledger = processor per currency, gross": ledger_gross == processor_gross,
        "no suspended line whose cycle was paid": not suspended_but_paid,
        "every failed cycle's line suspended": not unsuspended_failures,
        "every customer's line as the policy says (paid: active; declined/abandoned: suspended)": not wrong_outcome,
        "every 3-D Secure the bank accepted paid its renewal": not accepted_unpaid,
        "no customer action raised": not customers.errors,
    }
    ce = customers.events
    print(f"   events: {dict(sorted(events.items()))}")
    print(f"   proxy: {proxy_counts}")
    print(f"   renewals: {renewals_count} for {lines} lines, by status {dict(statuses)} (not final: {not_final})")
    print(f"   charges by status: {dict(charge_statuses)}")
    print(
        f"   localstripe PaymentIntents: {len(intents)}, succeeded {sum(succeeded_by_renewal.values())} "
        f"for {len(succeeded_by_renewal)} renewals, of which {len(refunded_intents)} refunded; renewals with >1 kept: "
        f"{len(doubled)} {dict(list(doubled.items())[:10])}; localstripe refunds: {len(refunds)}"
    )
    print(
        f"   ledger (net of refunds) {dict(ledger_net)}, processor {dict(processor_net)}; gross {dict(ledger_gross)} / {dict(processor_gross)}"
    )
    print("   customers (what they did):")
    table = [
        ("declining cards (default card declines)", sum(1 for p in plans.values() if p[0] == "declining")),
        ("  let the retries run out", ce["declining_nothing"]),
        ("  pay-now with the declining card: declined", ce["pay_now_declining_failed"]),
        ("pay-now (declining and 3-D Secure customers): attempts, all tabs", ce["pay_now_attempts"]),
        ("  pay-now while the retry cycle ran", ce["pay_now_during_retry_cycle"]),
        ("  pay-now from two tabs at once", ce["pay_now_two_tab_races"]),
        ("  pay-now with a good card: succeeded", ce["pay_now_good_succeeded"]),
        (
            "  pay-now refused (payment in flight / nothing to pay)",
            sum(v for k, v in ce.items() if k.startswith("pay_now_") and "_refused_" in k),
        ),
        ("  pay-now racing the bank's page in another tab", ce["pay_now_vs_authentication_races"]),
        ("3-D Secure cards", sum(1 for p in plans.values() if p[0] == "3ds")),
        ("  authenticated in time (bank accepted)", ce["3ds_completed_accepted"]),
        ("  authentication refused (intent already withdrawn)", ce["3ds_completed_refused"]),
        ("  abandoned", ce["3ds_abandon"]),
        ("  authenticated late: refused / accepted", f"{ce['3ds_late_refused']} / {ce['3ds_late_accepted']}"),
        (
            "  old intent authenticated while paying now: accepted / refused",
            f"{ce['3ds_raced_accepted']} / {ce['3ds_raced_refused']}",
        ),
        ("double successes refunded (with alert)", len(refunded_intents)),
        ("pay-now givers-up (never paid by the run's end)", ce["pay_now_gave_up"]),
    ]
    for label, value in table:
        print(f"     {label:<62} {value}")
    print(
        "   outcomes (card/behaviour, renewal, line): "
        + ", ".join(f"{k[0]}/{k[1]} {k[2]} {k[3]}: {v}" for k, v in sorted(outcomes.items()))
    )
    for problem, items in (
        ("customer errors", customers.errors),
        ("wrong outcomes", wrong_outcome),
        ("suspended but paid", suspended_but_paid),
        ("failed, not suspended", unsuspended_failures),
        ("waiting without alert", waiting_without_alert),
        ("refunds without alert", refunds_without_alert),
        ("accepted 3-D Secure unpaid", accepted_unpaid),
    ):
        if items:
            print(f"   ! {problem}: {items[:10]}")
    for name, ok in checks.items():
        print(f"   {'PASS' if ok else 'FAIL'}  {name}")
    return {
        "checks": checks,
        "statuses": dict(statuses),
        "events": dict(events),
        "doubled": doubled,
        "customers": dict(ce),
        "refunded_successes": len(refunded_intents),
        "plans": Counter(plans.values()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of chaos")
    parser.add_argument("--settle", type=float, default=300.0, help="seconds allowed to settle")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    # This process kicks renewals (ingest_usage) through the fleet's Redis, which it may kill.
    redis_port = common.free_port()
    os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    os.environ["RENEWALS_AUTHENTICATION_WINDOW_SECONDS"] = str(AUTHENTICATION_WINDOW_SECONDS)
    common.setup_django()
    common.log_to_file("chaos")
    common.header(
        f"chaos: {args.lines} lines, {args.duration:.0f} s of faults (seed {args.seed}), settle <= {args.settle:.0f} s"
    )
    results = run(lines=args.lines, duration=args.duration, settle=args.settle, seed=args.seed, redis_port=redis_port)
    sys.exit(0 if all(results["checks"].values()) else 1)


if __name__ == "__main__":
    main()
