"""The engine's metrics at /metrics move when a renewal is charged through localstripe
(docs/operations-metrics.md)."""

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from renewals.models import Renewal
from renewals.services import charging

from .test_charging import DECLINING_CARD, claimed

TOKEN = "scrape-token-for-tests"


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN

    def _scrape() -> dict[tuple, float]:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples
        }

    return _scrape


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_renewal_charge_moves_the_counters_and_the_state_gauges(
    scrape, rule, add_card, django_capture_on_commit_callbacks
):
    add_card()
    before = scrape()
    now = timezone.now()
    renewal = claimed(rule, now)
    middle = scrape()
    assert (
        value(middle, "esimsite_renewals", state="charging") == value(before, "esimsite_renewals", state="charging") + 1
    )
    with django_capture_on_commit_callbacks(execute=True):
        renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)
    assert renewal.status == Renewal.Status.SUCCEEDED
    after = scrape()
    outcome = {"outcome": "succeeded", "decline_kind": "none"}
    assert (
        value(after, "esimsite_charge_outcomes_total", **outcome)
        == value(before, "esimsite_charge_outcomes_total", **outcome) + 1
    )
    assert value(after, "esimsite_processor_writes_total", result="sent") > value(
        before, "esimsite_processor_writes_total", result="sent"
    )
    assert (
        value(after, "esimsite_renewals", state="succeeded")
        == value(before, "esimsite_renewals", state="succeeded") + 1
    )
    assert value(after, "esimsite_renewals", state="charging") == value(before, "esimsite_renewals", state="charging")
    # The scrapes themselves are counted by view name, not by path.
    assert value(after, "esimsite_http_requests_total", view="metrics", method="GET", status="200") >= 2
    assert ("esimsite_reconciliation_backlog", ()) in after and ("esimsite_outbox_backlog", ()) in after
    assert ("esimsite_dispatcher_lag_seconds", ()) in after


def test_a_declined_renewal_counts_its_decline_kind_and_the_retry(
    scrape, rule, add_card, django_capture_on_commit_callbacks
):
    add_card(DECLINING_CARD)
    before = scrape()
    now = timezone.now()
    renewal = claimed(rule, now)
    with django_capture_on_commit_callbacks(execute=True):
        renewal = charging.charge_renewal(renewal_id=renewal.pk, now=now)
    assert renewal.status == Renewal.Status.RETRY_SCHEDULED
    after = scrape()
    declined = {k: v for k, v in after.items() if k[0] == "esimsite_charge_outcomes_total" and v != before.get(k, 0.0)}
    assert len(declined) == 1
    [(name, labels)] = declined
    assert dict(labels)["decline_kind"] not in ("none", "")
    assert (
        value(after, "esimsite_renewal_retries_scheduled_total")
        == value(before, "esimsite_renewal_retries_scheduled_total") + 1
    )
