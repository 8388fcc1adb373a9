"""Bench 1, dispatcher scale: one dispatcher pass with D due renewals among N lines, then among
M lines (same D), to show whether the pass costs what the due work costs or what the table costs.

Every line has an enabled data-trigger rule (500 MB, data well above it) and one succeeded
renewal from the past; D of them also have a `due` renewal. Timed, each the median of --repeat
runs, the due rows put back to `due` between runs:
  claim  renewals.services.claims.claim_due_renewals(limit=D): the SKIP LOCKED claim and its UPDATE;
  pass   renewals.services.dispatcher.run_dispatcher(enqueue=False) with RENEWALS_CLAIM_BATCH_SIZE=D:
         trigger sweep + suspensions + reconciliation + requeue + the claim (the beat's tick);
  sweep  renewals.selectors.lines_with_enabled_rules_ids: the trigger sweep's candidate query alone.
Then EXPLAIN (ANALYZE, BUFFERS) of the claim query, of the sweep's candidate query and of its
MAX(expiry window) at the larger size.

    scripts/with-services .venv/bin/python -m bench.dispatcher [--due 10000 --sizes 100000 1000000]
"""

from __future__ import annotations

import argparse

from . import common

TABLES = ("accounts_line", "renewals_renewalrule", "renewals_renewal")


def _due_line_numbers(*, due: int, lines: int) -> list[int]:
    step = max(lines // due, 1)
    return [1 + i * step for i in range(due)]


def _reset(due_ids: list[int]) -> None:
    common.execute(
        "UPDATE renewals_renewal SET status = 'due', next_attempt_at = now() - interval '1 minute', claimed_at = NULL "
        "WHERE id = ANY(%s)",
        [due_ids],
    )


def captured_sql(call, marker: str) -> str:
    """The SQL (parameters inlined by psycopg) of the statement containing `marker` that `call()`
    runs: the bench explains the query the service really sends, not a copy of it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call()
    matching = [q["sql"] for q in queries.captured_queries if marker in q["sql"]]
    assert matching, f"no statement with {marker!r} in {[q['sql'][:80] for q in queries.captured_queries]}"
    return matching[0]


def explain(sql: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) inside a transaction that is rolled back (the claim locks rows)."""
    from django.db import connection, transaction

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def measure(*, due: int, repeat: int) -> dict:
    from django.test import override_settings
    from django.utils import timezone

    from renewals import selectors
    from renewals.models import Renewal
    from renewals.services import claims as renewals_claims
    from renewals.services import dispatcher

    due_ids = list(Renewal.objects.filter(status=Renewal.Status.DUE).values_list("id", flat=True))
    assert len(due_ids) == due, (len(due_ids), due)
    claims, passes, sweeps = [], [], []
    for _ in range(repeat):
        _reset(due_ids)
        with common.timed() as t:
            claimed = renewals_claims.claim_due_renewals(now=timezone.now(), limit=due)
        claims.append(t())
        assert len(claimed) == due, (len(claimed), due)

        _reset(due_ids)
        with override_settings(RENEWALS_CLAIM_BATCH_SIZE=due):
            with common.timed() as t:
                report = dispatcher.run_dispatcher(now=timezone.now(), enqueue=False)
        passes.append(t())
        assert len(report.claimed) == due and not report.opened, str(report)

        with common.timed() as t:
            candidates = selectors.lines_with_enabled_rules_ids(now=timezone.now())
        sweeps.append(t())
        assert candidates == [], len(candidates)
    _reset(due_ids)
    return {"claim": common.median(claims), "pass": common.median(passes), "sweep": common.median(sweeps)}


def run(
    *, due: int = 10_000, sizes: tuple[int, ...] = (100_000, 1_000_000), repeat: int = 3, show_plans: bool = True
) -> dict:
    """Load, measure at each size (growing the same tables), print. Returns the figures."""
    from renewals import selectors
    from renewals.services import claims as renewals_claims

    package = common.bench_package()
    results: dict[int, dict] = {}
    loaded = common.scalar("SELECT count(*) FROM accounts_line WHERE iccid LIKE '8988%%'")
    if loaded:
        raise SystemExit("bench.dispatcher: the database already holds bench lines; run it on fresh services")
    for size in sizes:
        with common.timed() as t:
            common.load_lines(first=loaded + 1, last=size, package_id=package.pk)
            common.load_rules(first=loaded + 1, last=size, package_id=package.pk)
            common.load_renewal_history(first=loaded + 1, last=size, package_id=package.pk)
            if loaded == 0:
                common.load_due_renewals(line_numbers=_due_line_numbers(due=due, lines=size), package_id=package.pk)
            common.vacuum_analyze(*TABLES)
        print(f"   loaded lines {loaded + 1}..{size} (+ rules, renewal history) in {t():.1f} s")
        loaded = size
        results[size] = figures = measure(due=due, repeat=repeat)
        print(
            f"   {size:>9,} lines, {due:,} due: claim {figures['claim'] * 1000:8.1f} ms   "
            f"pass {figures['pass'] * 1000:8.1f} ms   (of which sweep query {figures['sweep'] * 1000:8.1f} ms)"
        )
    small, large = sizes[0], sizes[-1]
    if small != large:
        for key in ("claim", "pass"):
            ratio = results[large][key] / results[small][key]
            print(f"   ratio {key} {large:,}/{small:,}: {ratio:.2f}  (target <= 1.3)")
            results[f"ratio_{key}"] = ratio
    print(
        f"   target: pass under 2 s for {due:,} due: {'met' if results[large]['pass'] < 2 else 'MISSED'} "
        f"({results[large]['pass']:.2f} s at {large:,} lines)"
    )
    if show_plans:
        from django.utils import timezone

        from renewals.models import Renewal

        due_ids = list(Renewal.objects.filter(status=Renewal.Status.DUE).values_list("id", flat=True))
        claim_sql = captured_sql(
            lambda: renewals_claims.claim_due_renewals(now=timezone.now(), limit=due), "SKIP LOCKED"
        )
        _reset(due_ids)
        claim_plan = explain(claim_sql)
        results["claim_plan"] = claim_plan
        results["claim_uses_partial_index"] = "renewal_claimable_idx" in claim_plan
        print(f"-- EXPLAIN (ANALYZE, BUFFERS) of the claim query at {large:,} lines:")
        print(claim_sql)
        print(claim_plan)
        print(f"   claim query uses renewal_claimable_idx: {results['claim_uses_partial_index']}")
        # The candidate query reads the lines' trigger copies (after the widest expiry window's MAX).
        sweep_sql = captured_sql(
            lambda: selectors.lines_with_enabled_rules_ids(now=timezone.now()), "renew_below_bytes"
        )
        results["sweep_plan"] = explain(sweep_sql)
        results["sweep_uses_trigger_index"] = "line_data_trigger_headroom_idx" in results["sweep_plan"]
        print(f"-- EXPLAIN (ANALYZE, BUFFERS) of the trigger sweep's candidate query at {large:,} lines:")
        print(sweep_sql)
        print(results["sweep_plan"])
        print(f"   sweep query uses line_data_trigger_headroom_idx: {results['sweep_uses_trigger_index']}")
        widest_sql = captured_sql(lambda: selectors.lines_with_enabled_rules_ids(now=timezone.now()), "MAX(")
        print(f"-- EXPLAIN (ANALYZE, BUFFERS) of the sweep's widest expiry window (read first) at {large:,} lines:")
        print(widest_sql)
        print(explain(widest_sql))
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    common.setup_django()
    common.log_to_file("dispatcher")
    common.header(
        f"bench 1: dispatcher pass, {args.due:,} due renewals among {', '.join(f'{s:,}' for s in args.sizes)} lines"
    )
    run(due=args.due, sizes=tuple(args.sizes), repeat=args.repeat)


if __name__ == "__main__":
    main()
