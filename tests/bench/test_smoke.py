"""Each bench at tiny sizes, so that `make bench` keeps working: the figures are printed, never
asserted (a timed assertion on a shared machine would be a flaky test). What is asserted is that
the bench did the work it claims to measure."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_dispatcher_bench_claims_every_due_renewal_at_two_sizes_and_explains_the_claim():
    from bench import dispatcher

    results = dispatcher.run(due=50, sizes=(400, 1200), repeat=1)

    assert set(results) >= {400, 1200, "ratio_claim", "ratio_pass", "claim_plan"}
    assert results["claim_uses_partial_index"], results["claim_plan"]


def test_ingest_bench_applies_every_record_directly_and_through_gunicorn():
    from bench import ingest

    results = ingest.run(records=400, batch=100, concurrency=2, lines=200)

    assert results["statuses"] == {200: 4}
    assert results["direct_rate"] > 0 and results["http_rate"] > 0


@pytest.mark.worker
def test_threshold_bench_measures_every_crossing_line_up_to_its_payment_intent():
    from bench import threshold

    results = threshold.run(lines=3, rate=5)

    assert results["succeeded"] == 3 and results["intents"] == 3
    assert 0 < results["p50_sent"] <= results["p50"]


@pytest.mark.worker
def test_throughput_bench_completes_every_renewal_and_counts_processor_writes():
    from bench import throughput

    results = throughput.run(renewals=6)

    assert results["succeeded"] == 6
    assert results["engine_rate"] > 0 and results["ceiling_rate"] > 0
    assert results["peak_writes"] >= 1  # read from localstripe's own access log


def test_portal_bench_browses_as_logged_in_customers_without_errors_in_both_phases():
    from bench import portal

    # Two phases (as the bench's 50 then 200 users), each two rounds of the five pages per user,
    # however long a loaded machine takes (300 s is only a safety net).
    out = portal.run(customers=60, users=(2, 3), seconds=300, web_workers=2, rounds=2)

    for users, results in out.items():
        # At least every user's two rounds (locust may start a replacement user before the run ends).
        assert results["Aggregated"]["requests"] >= users * 2 * 5
        assert results["Aggregated"]["failures"] == 0  # a redirect to the login page counts as one
        assert {"account", "line", "history"} <= set(results)
        assert results["cpu"]["gunicorn"] > 0 and results["cpu"]["locust"] > 0


def test_history_bench_loads_history_and_measures_both_phases():
    from bench import history

    results = history.run(records=10_000, days=3, lines=200, ingest_records=400, concurrency=2, page_requests=20)

    assert results["load"]["loaded"] == 10_000
    assert set(results["ratios"]) == {"ingest", "dedup", "page"}
    assert all(value > 0 for value in results["ratios"].values())


@pytest.mark.worker
def test_burst_bench_opens_every_crossing_line_in_its_request_and_settles_every_renewal():
    from bench import burst

    results = burst.run(lines=20, limit=50, customers=5, concurrency=2, batch=10, opening_sizes=(2, 6))

    assert results["statuses"] == {200} and results["accepted"] == 20
    assert results["opened"] == 20 and results["succeeded"] == 20
    assert results["refused"] == 0 and results["intents"] == 20
    # Opening is set-based: one INSERT of renewals per request, whatever the lines in it.
    assert results["opening"]["per_renewal"] == 0
    if results["renewal_inserts"] is not None:  # pg_stat_statements preloaded
        assert results["renewal_inserts"] == 2
