"""Bench 4, renewal throughput: renewals completed per second by a real Celery worker with 2
processes against localstripe, against the rate at which 2 plain client processes create and
confirm the same kind of PaymentIntent in the same localstripe (the ceiling), in the same run.

Also counts the processor writes per second as localstripe itself logged them: Stripe allows
100 writes/s in live mode, and the engine must stay under a configurable limit.

    scripts/with-services .venv/bin/python -m bench.throughput [--renewals 500]
"""
from __future__ import annotations

import argparse
import multiprocessing
import time

from . import common

MB = common.MB


def _plain_client(jobs, barrier, results):
    import stripe
    from django.conf import settings

    # A connection of its own: a keep-alive socket inherited through fork, shared with the
    # sibling, interleaves the two clients' requests on one stream.
    stripe.default_http_client = stripe.RequestsClient(timeout=settings.STRIPE_HTTP_TIMEOUT_SECONDS)
    barrier.wait()
    done = 0
    try:
        for customer_id, pm_id in jobs:
            stripe.PaymentIntent.create(
                amount=9800, currency="cny", customer=customer_id, payment_method=pm_id, payment_method_types=["card"],
                confirm=True, off_session=True, api_key=settings.STRIPE_SECRET_KEY, max_network_retries=0,
            )
            done += 1
    except BaseException as exc:  # the parent says what went wrong instead of waiting for a result
        results.put(("error", repr(exc)))
        raise
    results.put((done, time.time()))


def run_ceiling(jobs: list[tuple[str, str]], *, processes: int = 2) -> tuple[float, float, float]:
    """(rate, start, end) of `processes` forked plain stripe clients creating+confirming a PaymentIntent per job."""
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_plain_client, args=(jobs[k::processes], barrier, results)) for k in range(processes)]
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


def run(*, renewals: int = 500, worker_concurrency: int = 2) -> dict:
    from django.test import override_settings
    from django.utils import timezone
    from djstripe.models import Customer

    from payments.models import Charge
    from renewals import services
    from renewals.models import Renewal

    with common.timed() as t:
        line_ids = common.customers_with_cards(count=renewals, data_remaining_bytes=600 * MB)
    print(f"   {renewals} customers with a default card in localstripe: {t():.1f} s")
    package = common.bench_package()
    common.load_due_renewals(line_numbers=list(range(1, renewals + 1)), package_id=package.pk)
    common.vacuum_analyze("renewals_renewal")
    with common.celery_worker(concurrency=worker_concurrency, log_name="throughput-worker"):
        start = time.time()
        with override_settings(RENEWALS_CLAIM_BATCH_SIZE=renewals):
            report = services.run_dispatcher(now=timezone.now(), enqueue=True)
        assert len(report.claimed) == renewals, str(report)
        done = common.wait_until(
            lambda: Renewal.objects.filter(line_id__in=line_ids, status=Renewal.Status.SUCCEEDED).count() == renewals,
            timeout=60 + renewals,
        )
    settled = [c.timestamp() for c in Charge.objects.filter(renewal__isnull=False, status=Charge.Status.SUCCEEDED)
               .values_list("settled_at", flat=True)]
    end = max(settled)
    engine_rate = len(settled) / (end - start)
    engine_writes = common.processor_writes_per_second(since=start, until=end)
    print(f"   engine: {len(settled)} renewals succeeded (all: {done}) in {end - start:.2f} s = {engine_rate:.1f} renewals/s "
          f"({worker_concurrency} worker processes)")

    jobs = [(c.id, c.default_payment_method_id) for c in Customer.objects.filter(subscriber__email__startswith="bench")]
    ceiling_rate, c_start, c_end = run_ceiling(jobs)
    ceiling_writes = common.processor_writes_per_second(since=c_start, until=c_end)
    ratio = engine_rate / ceiling_rate
    print(f"   ceiling: 2 plain stripe clients created+confirmed {len(jobs)} PaymentIntents in {c_end - c_start:.2f} s "
          f"= {ceiling_rate:.1f} /s")
    print(f"   ratio engine/ceiling: {ratio:.2f}  (target >= 0.6)")
    peak = max(engine_writes.values(), default=0)
    print(f"   processor writes (POST /v1/payment_intents, localstripe's log): engine peak {peak}/s over "
          f"{len(engine_writes)} s, ceiling run peak {max(ceiling_writes.values(), default=0)}/s")
    print("   rate limit: the engine has NO processor rate limiter (no setting, no counter); nothing bounds "
          "its writes but the workers' speed. Gap against the target (configurable limit, never exceeded).")
    return {"engine_rate": engine_rate, "ceiling_rate": ceiling_rate, "ratio": ratio, "peak_writes": peak,
            "succeeded": len(settled)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renewals", type=int, default=500)
    args = parser.parse_args(argv)
    common.setup_django()
    common.log_to_file("throughput")
    common.header(f"bench 4: renewal throughput, {args.renewals} renewals, 2 worker processes vs 2 plain clients")
    run(renewals=args.renewals)


if __name__ == "__main__":
    main()
