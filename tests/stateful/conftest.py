"""The money model's fixtures: the limits that would only refuse its steps are lifted, and a
machine for the regression tests that replay its counterexamples step by step."""

import pytest


@pytest.fixture
def money_settings(settings):
    """The customers' payment rate limits and the processor write limit are other tests' subject
    (tests/security/test_rate_limits.py); here they would only refuse steps."""
    settings.PAYMENTS_RATE_LIMITS = {action: "100000/m/user,100000/m/ip" for action in settings.PAYMENTS_RATE_LIMITS}
    settings.STRIPE_WRITE_RATE_LIMIT = 10000
    return settings


@pytest.fixture
def machine(db, money_settings):
    """A fresh MoneyMachine (its own savepoint and clock), torn down as hypothesis would."""
    from .test_money_model import MoneyMachine

    machine = MoneyMachine()
    yield machine
    machine.teardown()


@pytest.fixture
def partner(settings):
    """The partner's command endpoint (a real HTTP server on 127.0.0.1) as the line model's edge."""
    from .partner_standin import PartnerStandIn

    with PartnerStandIn() as stand_in:
        settings.NETWORK_WEBHOOK_URL = stand_in.url
        yield stand_in


@pytest.fixture
def line_machine(db, partner):
    """A fresh LineMachine (its own savepoint and clock), torn down as hypothesis would."""
    from .test_line_model import LineMachine

    LineMachine.partner = partner
    machine = LineMachine()
    yield machine
    machine.teardown()
