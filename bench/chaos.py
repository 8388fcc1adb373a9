"""`make chaos`: lines cross their renewal thresholds while a controller breaks things at random
(seeded, printed) moments, then everything settles and the invariants are checked against
localstripe's own list of PaymentIntents. Loopback only, bounded in time.

What it does, exactly:
- its own Redis (so it may kill and restart it), 2 Celery workers (solo pool: a SIGKILL kills
  the process doing the charge), 1 beat ticking the dispatcher every 2 s, and an aiohttp
  fault-injecting proxy between the workers and localstripe (STRIPE_API_BASE points at it; the
  checks talk to localstripe directly);
- N customers with a default card and a line 100 MB above its 500 MB threshold; during the chaos
  window each line gets a usage batch (partner.services.usage.ingest_usage, the partner
  endpoint's code) that takes it below the threshold, spread over the window;
- the controller, every 2-5 s, does one of: SIGKILL a worker and restart it 1-3 s later; SIGKILL
  Redis and restart it on the same port 1-3 s later; start a second beat (two beats tick for a
  while) or stop one; switch the proxy to the next fault (in turn) for 3-8 s, on half the requests: `500` (not
  forwarded), `500_after` (forwarded, then 500: the charge happened), `429` (not forwarded),
  `timeout` (forwarded, answer held past the client's 3 s time-out), `drop` (forwarded, then the
  connection is closed with no answer);
- settle: faults off, 2 workers and 1 beat up, until every renewal is final or --settle seconds.
Checks (exit status 1 if one fails): every renewal final (succeeded / failed / cancelled); at most
one succeeded PaymentIntent per renewal in localstripe; sum of succeeded Charge rows = sum of
succeeded PaymentIntents; no suspended line whose renewal succeeded.

Settings for the run (env of the workers and beat): RENEWALS_DISPATCH_INTERVAL_SECONDS=2,
RENEWALS_RECONCILE_AFTER_MINUTES=1 (unknown outcomes are looked up after a minute),
STRIPE_HTTP_TIMEOUT_SECONDS=3; retry policy delays 0 minutes (retries on the next tick).

    scripts/with-services .venv/bin/python -m bench.chaos [--lines 500 --duration 90 --settle 300 --seed 1]
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
import time
import urllib.request
from collections import Counter
from datetime import datetime, timezone as dt_timezone

from . import common

FAULTS = ("500", "500_after", "429", "timeout", "drop")


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
            out_headers = {k: v for k, v in up.headers.items()
                           if k.lower() in ("content-type", "request-id", "idempotency-key", "stripe-version")}
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

    def __init__(self, *, redis_port: int, proxy_port: int, log_dir):
        self.redis_port, self.proxy_port, self.log_dir = redis_port, proxy_port, log_dir
        self.redis = None
        self.workers: dict[str, subprocess.Popen | None] = {"w1": None, "w2": None}
        self.beats: dict[str, subprocess.Popen | None] = {"b1": None, "b2": None}
        self.env = common.child_env(
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
            STRIPE_API_BASE=f"http://127.0.0.1:{proxy_port}", STRIPE_HTTP_TIMEOUT_SECONDS="3",
            RENEWALS_DISPATCH_INTERVAL_SECONDS="2", RENEWALS_RECONCILE_AFTER_MINUTES="1",
        )

    def _log(self, name):
        return open(self.log_dir / f"chaos-{name}.log", "ab")

    def start_redis(self):
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.log_dir)], stdout=self._log("redis"), stderr=subprocess.STDOUT,
        )
        common.wait_for_port(self.redis_port, process=self.redis)

    def start_worker(self, name):
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "esimsite", "worker", "--pool=solo", "--loglevel=INFO",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"chaos-{name}-{os.getpid()}@%h"],
            cwd=common.ROOT, env=self.env, stdout=self._log(name), stderr=subprocess.STDOUT,
        )

    def start_beat(self, name):
        self.beats[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "esimsite", "beat", "--loglevel=INFO",
             "--schedule", str(self.log_dir / f"chaos-{name}-schedule")],
            cwd=common.ROOT, env=self.env, stdout=self._log(name), stderr=subprocess.STDOUT,
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


# --- the run --------------------------------------------------------------------------------------

def run(*, lines: int = 500, duration: float = 90.0, settle: float = 300.0, seed: int = 1, redis_port: int | None = None) -> dict:
    import stripe
    from django.conf import settings
    from django.db.models import Sum

    from accounts.models import Line
    from partner.services.usage import UsageInput, ingest_usage
    from payments.models import Charge
    from renewals.models import Renewal, RetryPolicy

    rng = random.Random(seed)
    policy = RetryPolicy.current()
    policy.retry_delays_minutes = [0, 0, 0, 0]
    policy.grace_hours = 0
    policy.save()
    with common.timed() as t:
        line_ids = common.customers_with_cards(count=lines, data_remaining_bytes=600 * common.MB)
    print(f"   {lines} customers with a default card, line 100 MB above its threshold: {t():.1f} s")

    common.OUT_DIR.mkdir(parents=True, exist_ok=True)
    proxy_port = common.free_port()
    ready = multiprocessing.get_context("fork").Event()
    proxy = multiprocessing.get_context("fork").Process(
        target=_proxy_main, args=(proxy_port, settings.STRIPE_API_BASE.rstrip("/"), ready), daemon=True)
    proxy.start()
    assert ready.wait(30)
    common.wait_for_port(proxy_port)
    fleet = Fleet(redis_port=redis_port or common.free_port(), proxy_port=proxy_port, log_dir=common.OUT_DIR)
    events: Counter = Counter()
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
        pending_restarts: list[tuple[float, str]] = []
        next_event = start + rng.uniform(2, 5)
        fault_until = 0.0
        fault_start = rng.randrange(len(FAULTS))
        period = datetime(2026, 11, 1, 10, 0, tzinfo=dt_timezone.utc)
        sent = 0
        while time.monotonic() - start < duration:
            now = time.monotonic()
            # Lines cross their thresholds at an even pace over the first 80% of the window.
            due_sent = min(lines, int((now - start) / (duration * 0.8) * lines) + 1)
            while sent < due_sent:
                sent += 1
                try:
                    ingest_usage(records=[UsageInput(index=0, partner_record_id=f"chaos-{sent}", iccid=common.iccid(sent),
                                                     bytes=200 * common.MB, start=period, end=period)])
                except Exception as exc:  # the partner would retry the batch: so do we, below
                    events["ingest_error"] += 1
                    print(f"   ! ingest of line {sent} failed ({type(exc).__name__}); retried later")
                    sent -= 1
                    break
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
                    name = rng.choice([n for n, p in fleet.workers.items() if p is not None and p.poll() is None] or ["w1"])
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
                    print(f"   t={now - start:5.1f}s proxy fault {mode} on half the requests for {fault_until - now:.1f}s")
            time.sleep(0.05)
        while sent < lines:  # the window ended before every line crossed (ingest errors): finish
            sent += 1
            ingest_usage(records=[UsageInput(index=0, partner_record_id=f"chaos-{sent}", iccid=common.iccid(sent),
                                             bytes=200 * common.MB, start=period, end=period)])

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
        settle_start = time.monotonic()
        settled = common.wait_until(
            lambda: Renewal.objects.filter(line_id__in=line_ids).count() >= lines
            and not Renewal.objects.filter(line_id__in=line_ids).exclude(status__in=final).exists(),
            timeout=settle, interval=1.0,
        )
        print(f"   settled: {settled} after {time.monotonic() - settle_start:.0f} s")
        proxy_counts = proxy_control(proxy_port, "")["counts"]
    finally:
        fleet.stop_all()
        proxy.terminate()
        proxy.join(10)

    # --- checks, against localstripe's own list (directly, not through the proxy) -----------------
    statuses = Counter(Renewal.objects.filter(line_id__in=line_ids).values_list("status", flat=True))
    renewals_count = sum(statuses.values())
    intents = list(stripe.PaymentIntent.list(limit=100, api_key=settings.STRIPE_SECRET_KEY).auto_paging_iter())
    succeeded_by_renewal: Counter = Counter()
    succeeded_sum = 0
    for pi in intents:
        if pi["status"] == "succeeded":
            succeeded_by_renewal[(pi["metadata"] or {}).get("renewal_id")] += 1
            succeeded_sum += pi["amount"]
    doubled = {rid: n for rid, n in succeeded_by_renewal.items() if n > 1}
    charge_sum = Charge.objects.filter(status=Charge.Status.SUCCEEDED).aggregate(s=Sum("amount_minor"))["s"] or 0
    charge_statuses = Counter(Charge.objects.values_list("status", flat=True))
    suspended_but_paid = Line.objects.filter(
        pk__in=line_ids, status=Line.Status.SUSPENDED, renewals__status=Renewal.Status.SUCCEEDED).distinct().count()
    not_final = renewals_count - sum(statuses[s] for s in final)
    checks = {
        "every line has a renewal": renewals_count >= lines,
        "every renewal final": not_final == 0,
        "<= 1 succeeded PaymentIntent per renewal": not doubled,
        "sum succeeded Charge = sum succeeded PaymentIntent": charge_sum == succeeded_sum,
        "no suspended line whose renewal succeeded": suspended_but_paid == 0,
    }
    print(f"   events: {dict(sorted(events.items()))}")
    print(f"   proxy: {proxy_counts}")
    print(f"   renewals: {renewals_count} for {lines} lines, by status {dict(statuses)}")
    print(f"   charges by status: {dict(charge_statuses)}")
    print(f"   localstripe PaymentIntents: {len(intents)}, succeeded {sum(succeeded_by_renewal.values())} "
          f"for {len(succeeded_by_renewal)} renewals; renewals with >1 succeeded: {len(doubled)} {dict(list(doubled.items())[:10])}")
    print(f"   sum succeeded Charge rows {charge_sum}, sum succeeded PaymentIntents {succeeded_sum}")
    print(f"   suspended lines whose renewal succeeded: {suspended_but_paid}")
    for name, ok in checks.items():
        print(f"   {'PASS' if ok else 'FAIL'}  {name}")
    return {"checks": checks, "statuses": dict(statuses), "events": dict(events), "doubled": doubled}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of chaos")
    parser.add_argument("--settle", type=float, default=300.0, help="seconds allowed to settle")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    # This process kicks renewals (ingest_usage) through the fleet's Redis, which it may kill.
    redis_port = common.free_port()
    os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    common.setup_django()
    common.log_to_file("chaos")
    common.header(f"chaos: {args.lines} lines, {args.duration:.0f} s of faults (seed {args.seed}), settle <= {args.settle:.0f} s")
    results = run(lines=args.lines, duration=args.duration, settle=args.settle, seed=args.seed, redis_port=redis_port)
    sys.exit(0 if all(results["checks"].values()) else 1)


if __name__ == "__main__":
    main()
