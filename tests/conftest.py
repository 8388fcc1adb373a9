"""Shared fixtures. The suite runs against the real services that scripts/with-services
starts (PostgreSQL, Redis, localstripe); it refuses to run without them."""
import os

import pytest

from accounts import sms
from tests.factories import make_line, make_package, make_user


def pytest_configure(config):
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")) or not os.environ.get("REDIS_URL"):
        raise pytest.UsageError(
            "The suite needs the real services: run `make test`, or "
            "`scripts/with-services .venv/bin/python -m pytest ...` for a subset."
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
