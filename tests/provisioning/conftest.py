"""Provisioning fixtures: the SM-DP+ stand-in that scripts/with-services started (SMDP_URL), reset
before each test and steered through its admin endpoints; cards from tests/payments."""

import pytest
import requests
from django.conf import settings

from tests.payments.conftest import add_card, stripe_customer  # noqa: F401  (fixtures)


class SmdpControl:
    """The stand-in's control endpoints (scripts/smdp_standin.py): failures, pool, the device."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def post(self, path: str, body: dict | None = None) -> dict:
        response = requests.post(f"{self.url}{path}", json=body or {}, timeout=60)
        response.raise_for_status()
        return response.json()

    def fail(self, mode: str, **options) -> None:
        self.post("/admin/failure", {"mode": mode, **options})

    def state(self) -> dict:
        return requests.get(f"{self.url}/admin/state", timeout=10).json()

    def calls(self, function: str | None = None) -> list[dict]:
        return [c for c in self.state()["calls"] if function is None or c["function"] == function]

    def device(self, iccid: str, step: str, **overrides) -> dict:
        return self.post(f"/test/device/{iccid}/{step}", overrides)


@pytest.fixture
def smdp(settings):
    control = SmdpControl(settings.SMDP_URL)
    control.post("/admin/reset")
    # Tests talk to the stand-in with a short time-out: a "slow" answer is a time-out here.
    settings.SMDP_TIMEOUT_SECONDS = 5
    yield control
    control.post("/admin/reset")


@pytest.fixture
def card(add_card):  # noqa: F811
    return add_card()


@pytest.fixture
def callback_secret():
    return settings.SMDP_CALLBACK_SECRET
