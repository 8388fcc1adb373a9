"""Bench 4, renewal throughput: renewals completed per second by a real Celery worker with 2
processes against localstripe, against the rate at which 2 plain client processes create and
confirm the same kind of PaymentIntent in the same localstripe (the ceiling), in the same run.

Also counts the processor writes: the engine's go through the write limiter
(payments/processor_limit.py), first at its production default (100/s), whose counters give the
writes and the most sent in any 1-second window, next to localstripe's own log; then a second
phase at a low limit (--low-limit, 20/s) shows that the limit holds and what throughput it allows.

    scripts/with-services .venv/bin/python -m bench.throughput [--renewals 500] [--low-limit 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

from . import common, profiling

MB = common.MB


def _plain_client(jobs, barrier, results, threads=1):
    import threading

    import stripe
    from django.conf import settings

    # A connection of its own: a keep-alive socket inherited through fork, shared with the
    # sibling, interleaves the two clients' requests on one stream. (The SDK's RequestsClient
    # keeps one session per thread.)
    stripe.default_http_client = stripe.RequestsClient(timeout=settings.STRIPE_HTTP_TIMEOUT_SECONDS)
    barrier.wait()
    done = [0] * threads
    errors = []

    def client(k: int) -> None:
        try:
            for customer_id, pm_id in jobs[k::threads]:
                _create(stripe, settings, customer_id, pm_id)
                done[k] += 1
        except BaseException as exc:  # the parent says what went wrong instead of waiting for a result
            errors.append(repr(exc))

    others = [threading.Thread(target=client, args=(k,)) for k in range(1, threads)]
    for other in others:
        other.start()
    client(0)
    for other in others:
        other.join()
    if errors:
        results.put(("error", errors[0]))
        return
    results.put((sum(done), time.time()))


def _create(stripe, settings, customer_id: str, pm_id: str) -> None:
    stripe.PaymentIntent.create(
        amount=9800,
        currency="cny",
        customer=customer_id,
        payment_method=pm_id,
        payment_method_types=["card"],
        confirm=True,
        off_session=True,
        api_key=settings.STRIPE_SECRET_KEY,
        max_network_retries=0,
    )


def run_ceiling(jobs: list[tuple[str, str]], *, processes: int = 2, threads: int = 1) -> tuple[float, float, float]:
    """(rate, start, end) of `processes` forked plain stripe clients (each with `threads` threads)
    creating+confirming a PaymentIntent per job."""
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_plain_client, args=(jobs[k::processes], barrier, results, threads))
        for k in range(processes)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.time()
    outcomes = [results.get(timeout=600) for _ in procs]
    errors = [o[1] for o in outcomes if o[0] == "error"]
    assert not errors, errors
    for p in procs:
        p.join()
    end = max(o[1] for o in outcomes)
    return sum(o[0] for o in outcomes) / (end - start), start, end


PRODUCTION_LIMIT = 100  # STRIPE_WRITE_RATE_LIMIT's default for live keys


def _engine_phase(
    *, line_ids: list[int], package_id: int, limit: int, worker_concurrency: int, log_name: str, py_spy: bool = False
) -> dict:
    """Due renewals for the given lines, charged by a real worker whose write limit is `limit`;
    returns the rate, the limiter's counters and localstripe's own per-second count."""
    from django.test import override_settings
    from django.utils import timezone

    from accounts.models import Line
    from payments import processor_limit
    from payments.models import Charge
    from renewals.models import Renewal
    from renewals.services import claims, dispatcher

    numbers = [int(iccid[4:]) for iccid in Line.objects.filter(pk__in=line_ids).values_list("iccid", flat=True)]
    common.load_due_renewals(line_numbers=numbers, package_id=package_id)
    common.vacuum_analyze("renewals_renewal")
    count = len(line_ids)

    def all_paid() -> bool:
        # A write refused after the bounded wait leaves its renewal due again: hand it out, as beat would.
        due = list(Renewal.objects.filter(line_id__in=line_ids, status=Renewal.Status.DUE).values_list("pk", flat=True))
        if due:
            claims.dispatch_now(renewal_ids=due, now=timezone.now())
        return (
            not due
            and Renewal.objects.filter(
                line_id__in=line_ids, status=Renewal.Status.SUCCEEDED, completed_at__gte=start_at
            ).count()
            == count
        )

    pg_on = profiling.pg_statements_available()
    raw = common.OUT_DIR / f"{log_name}.pyspy.txt"
    raw.unlink(missing_ok=True)
    with override_settings(STRIPE_WRITE_RATE_LIMIT=limit):
        with common.celery_worker(
            concurrency=worker_concurrency, log_name=log_name, env={"STRIPE_WRITE_RATE_LIMIT": str(limit)}
        ) as worker:
            processor_limit.reset_write_stats()
            pg_before = profiling.pg_reset() if pg_on else None
            with (
                profiling.sampled(worker.pid if py_spy else None, raw),
                profiling.CpuMeter(worker.pid) as cpu,
            ):
                start_at = timezone.now()
                start = time.time()
                with override_settings(RENEWALS_CLAIM_BATCH_SIZE=count):
                    report = dispatcher.run_dispatcher(now=timezone.now(), enqueue=True)
                assert len(report.claimed) == count, str(report)
                done = common.wait_until(all_paid, timeout=60 + 2 * count, interval=1.0)
            pg = profiling.pg_read(pg_before) if pg_before is not None else None
        stats = processor_limit.write_stats()
    settled = [
        c.timestamp()
        for c in Charge.objects.filter(
            renewal__line_id__in=line_ids, status=Charge.Status.SUCCEEDED, settled_at__gte=start_at
        ).values_list("settled_at", flat=True)
    ]
    end = max(settled)
    per_second = common.processor_writes_per_second(since=start, until=end)
    return {
        "succeeded": len(settled),
        "done": done,
        "seconds": end - start,
        "rate": len(settled) / (end - start),
        "stats": stats,
        "log_peak": max(per_second.values(), default=0),
        "log_seconds": len(per_second),
        "pg": pg,
        "cpu": cpu,
        "tasks": profiling.tasks_received(common.OUT_DIR / f"{log_name}.log"),
        "py_spy": profiling.summarise(raw) if py_spy else None,
    }


def _print_profile(label: str, phase: dict) -> None:
    per = max(phase["succeeded"], 1)
    tasks = phase["tasks"]
    print(
        f"   {label} Celery messages received: {sum(tasks.values())} = {sum(tasks.values()) / per:.2f} per renewal ("
        + ", ".join(f"{name} {n}" for name, n in tasks.most_common())
        + ")"
    )
    print(f"   {label} CPU in cores over the phase (2 = both cores busy): {phase['cpu'].line()}")
    if phase["pg"] is not None:
        profiling.print_pg(label, phase["pg"], per=per)
        profiling.write_pg(common.OUT_DIR / f"throughput-{label}.sql.txt", phase["pg"], per=per)
    if phase["py_spy"] is not None:
        profiling.print_py_spy(label, phase["py_spy"])


def _print_writes(label: str, phase: dict) -> None:
    stats = phase["stats"]
    print(
        f"   {label} processor writes, limit {stats.limit}/s: {stats.writes} sent, {stats.waited} waited for a slot "
        f"(total {stats.wait_seconds_total:.2f} s), {stats.refused} refused after the bounded wait; "
        f"most in any 1 s window: {stats.max_window} (limiter's log), "
        f"{phase['log_peak']}/s peak POST /v1/payment_intents per whole second in localstripe's own log"
    )


def run(
    *,
    renewals: int = 500,
    worker_concurrency: int = 2,
    low_limit: int = 20,
    low_renewals: int | None = None,
    low_concurrency: int = 4,
    py_spy: bool = False,
) -> dict:
    from django.conf import settings
    from django.test import override_settings
    from djstripe.models import Customer

    # The set-up's own writes are not what is measured: no limit worth the name while it runs.
    with common.timed() as t, override_settings(STRIPE_WRITE_RATE_LIMIT=100_000):
        line_ids = common.customers_with_cards(count=renewals, data_remaining_bytes=600 * MB)
    print(f"   {renewals} customers with a default card in localstripe: {t():.1f} s")
    package = common.bench_package()

    engine = _engine_phase(
        line_ids=line_ids,
        package_id=package.pk,
        limit=PRODUCTION_LIMIT,
        worker_concurrency=worker_concurrency,
        log_name="throughput-worker",
        py_spy=py_spy,
    )
    print(
        f"   engine: {engine['succeeded']} renewals succeeded (all: {engine['done']}) in {engine['seconds']:.2f} s "
        f"= {engine['rate']:.1f} renewals/s ({worker_concurrency} worker processes)"
    )
    _print_writes("engine", engine)
    _print_profile("engine", engine)

    jobs = [(c.id, c.default_payment_method_id) for c in Customer.objects.filter(subscriber__email__startswith="bench")]
    with profiling.CpuMeter(None) as ceiling_cpu:
        ceiling_rate, c_start, c_end = run_ceiling(jobs)
    ceiling_writes = common.processor_writes_per_second(since=c_start, until=c_end)
    ratio = engine["rate"] / ceiling_rate
    print(
        f"   ceiling: 2 plain stripe clients (no limiter) created+confirmed {len(jobs)} PaymentIntents in "
        f"{c_end - c_start:.2f} s = {ceiling_rate:.1f} /s; localstripe's log peak {max(ceiling_writes.values(), default=0)}/s"
    )
    print(f"   ceiling CPU in cores (the clients are forked from the bench): {ceiling_cpu.line()}")
    print(f"   ratio engine/ceiling: {ratio:.2f}")
    # The engine overlaps round trips on RENEWALS_CHARGE_THREADS threads per process; the same
    # concurrency for the plain clients says whether localstripe, not the clients, is the bound.
    threads = int(getattr(settings, "RENEWALS_CHARGE_THREADS", 4))  # 4: the base tree has no setting
    with profiling.CpuMeter(None) as threaded_cpu:
        threaded_rate, _t_start, _t_end = run_ceiling(jobs, threads=threads)
    print(
        f"   the same 2 plain clients with {threads} threads each (the engine's concurrency): "
        f"{threaded_rate:.1f} PaymentIntents/s; engine / that = {engine['rate'] / threaded_rate:.2f}; "
        f"CPU in cores: {threaded_cpu.line()}"
    )

    low_ids = line_ids[: low_renewals or min(renewals, 200)]
    low = _engine_phase(
        line_ids=low_ids,
        package_id=package.pk,
        limit=low_limit,
        worker_concurrency=low_concurrency,
        log_name="throughput-worker-low",
    )
    holds = low["stats"].max_window <= low_limit and low["log_peak"] <= low_limit
    print(
        f"   low limit {low_limit}/s, {low_concurrency} worker processes: {low['succeeded']} renewals in {low['seconds']:.2f} s "
        f"= {low['rate']:.1f} renewals/s (the limit allows {low_limit}/s, one write per renewal)"
    )
    _print_writes("low-limit", low)
    _print_profile("low-limit", low)
    bound = (
        "it bound: writes waited for their slot"
        if low["stats"].waited
        else "it did not bind: the engine is slower than the limit here; try a lower --low-limit"
    )
    print(
        f"   limit holds: {'yes' if holds else 'NO'} (most in any 1 s window {low['stats'].max_window}, "
        f"localstripe's peak {low['log_peak']}/s, limit {low_limit}/s); {bound}"
    )
    common.goal("renewal throughput vs plain clients", ratio, target=0.8, at_least=True, unit="×")
    common.goal(
        "processor writes in any 1 s vs limit (production limit)",
        max(engine["stats"].max_window, engine["log_peak"]),
        target=PRODUCTION_LIMIT,
        at_least=False,
        note="the limiter's own log and localstripe's, whichever is higher",
    )
    common.goal(
        f"processor writes in any 1 s vs limit (low limit {low_limit}/s)",
        max(low["stats"].max_window, low["log_peak"]),
        target=low_limit,
        at_least=False,
        note="the limiter's own log and localstripe's, whichever is higher",
    )
    return {
        "engine_rate": engine["rate"],
        "ceiling_rate": ceiling_rate,
        "threaded_ceiling_rate": threaded_rate,
        "ratio": ratio,
        "peak_writes": engine["log_peak"],
        "succeeded": engine["succeeded"],
        "writes": engine["stats"].writes,
        "max_window": engine["stats"].max_window,
        "refused": engine["stats"].refused,
        "low_limit": low_limit,
        "low_rate": low["rate"],
        "low_succeeded": low["succeeded"],
        "low_writes": low["stats"].writes,
        "low_max_window": low["stats"].max_window,
        "low_log_peak": low["log_peak"],
        "low_refused": low["stats"].refused,
        "low_waited": low["stats"].waited,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renewals", type=int, default=500)
    parser.add_argument("--low-limit", type=int, default=20, help="write limit of the second phase (writes/s)")
    parser.add_argument(
        "--low-renewals", type=int, default=None, help="renewals of the second phase (default: min(renewals, 200))"
    )
    parser.add_argument(
        "--py-spy", action="store_true", help="sample the worker processes of the first phase with py-spy"
    )
    args = parser.parse_args(argv)
    common.setup_django()
    common.log_to_file("throughput")
    common.header(f"bench 4: renewal throughput, {args.renewals} renewals, 2 worker processes vs 2 plain clients")
    run(renewals=args.renewals, low_limit=args.low_limit, low_renewals=args.low_renewals, py_spy=args.py_spy)


if __name__ == "__main__":
    main()
