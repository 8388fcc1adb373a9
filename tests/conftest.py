"""Shared fixtures. The suite runs against the real services that scripts/with-services
starts (PostgreSQL, Redis, localstripe); without them it runs only the tests marked `pure`
(`make test-fast`: no database, Redis or processor), and refuses any other."""

import os

import pytest

from accounts import sms
from tests.builders import make_line, make_package, make_user

DATABASE_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
    "live_server",
}


def services_are_up() -> bool:
    url = os.environ.get("DATABASE_URL", "")
    return url.startswith(("postgres://", "postgresql://")) and bool(os.environ.get("REDIS_URL"))


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what it does not want
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("pure") and (
            item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
        ):
            raise pytest.UsageError(f"{item.nodeid} is marked pure but uses the database")
    if services_are_up():
        return
    impure = [item.nodeid for item in items if not item.get_closest_marker("pure")]
    if impure:
        raise pytest.UsageError(
            f"{len(impure)} of the selected tests need the real services (first: {impure[0]}): run `make test`, "
            "or `scripts/with-services .venv/bin/python -m pytest ...` for a subset; "
            "`make test-fast` runs the tests marked pure without them."
        )


@pytest.fixture(autouse=True)
def _clean_edges(settings):
    """Captured SMS and the shared Redis cache (allauth's rate limits live there) start empty."""
    from django.core.cache import cache

    sms.outbox.clear()
    cache.clear()
    yield
    sms.outbox.clear()


@pytest.fixture
def customer(db):
    return make_user(email="alice@example.com")


@pytest.fixture
def other_customer(db):
    return make_user(email="mallory@example.com")


@pytest.fixture
def package(db):
    return make_package()


@pytest.fixture
def line(customer, package):
    return make_line(owner=customer, package=package)


@pytest.fixture
def customer_client(client, customer):
    client.force_login(customer)
    return client
