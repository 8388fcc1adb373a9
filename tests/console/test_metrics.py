"""/metrics is not public: only the scraper with the bearer token (docs/operations-metrics.md);
tests/renewals/test_metrics.py sees its counters move."""

TOKEN = "scrape-token-for-tests"


def test_without_a_configured_token_there_is_no_metrics_page(client, db, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_metrics_refuses_a_missing_or_wrong_token(client, db, settings, customer_client):
    settings.METRICS_TOKEN = TOKEN
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401 and b"esimsite_" not in response.content
    # A signed-in customer is no scraper either.
    assert customer_client.get("/metrics").status_code == 401
