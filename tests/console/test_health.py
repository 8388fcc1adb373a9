"""The probes: live answers without I/O, ready says whether this web process can serve (the
database and its migrations, not Redis), the status keeps the whole picture (docs/deploying.md)."""

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from console import health


@pytest.fixture
def fresh_migration_check():
    health.migrations.forget()
    yield
    health.migrations.forget()


def test_live_answers_ok_for_anyone(client, db):
    response = client.get("/healthz/live")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_ready_is_200_with_the_database_up_and_every_migration_applied(client, db, fresh_migration_check):
    response = client.get("/healthz/ready")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "migrations": "ok", "status": "ok"}


def test_ready_ignores_redis_which_the_status_reports(client, db, settings, fresh_migration_check):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    assert client.get("/healthz/ready").status_code == 200
    assert client.get("/healthz").json()["redis"] == "down"


def test_ready_is_503_while_a_migration_is_unapplied(client, db, fresh_migration_check):
    # The database as a deploy leaves it before `release` has run: the newest migration of
    # accounts not recorded (the test's transaction puts the row back).
    recorder = MigrationRecorder(connection)
    latest = recorder.migration_qs.filter(app="accounts").order_by("-id").first()
    recorder.record_unapplied("accounts", latest.name)
    response = client.get("/healthz/ready")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "migrations": "pending", "status": "fail"}

    recorder.record_applied("accounts", latest.name)
    assert client.get("/healthz/ready").status_code == 200


def test_ready_once_true_does_not_load_the_migrations_again(
    client, db, fresh_migration_check, django_assert_max_num_queries
):
    assert client.get("/healthz/ready").status_code == 200
    with django_assert_max_num_queries(1):  # SELECT 1, nothing from django_migrations
        assert client.get("/healthz/ready").status_code == 200
