"""The processor write limiter (payments/processor_limit.py behind gateways.WriteLimitedClient):
several real processes writing to localstripe never put more than the limit into any second, as a
recording proxy in front of localstripe and localstripe's own `created` stamps see it; every write
path of the gateway is counted; a refused renewal charge sends nothing and costs no attempt; with
the limiter's Redis stopped nothing is sent, and everything goes through once it is back."""

import logging
import multiprocessing
import subprocess
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
import stripe
from django.conf import settings as django_settings
from django.db import connections
from django.utils import timezone

from payments import gateways, processor_limit
from payments.models import Charge
from payments.services import errors, on_session, refunds
from renewals.models import Renewal
from renewals.services import charging, claims, pay_now, triggers
from tests.builders import MB, make_charge, make_rule
from tests.payments.conftest import create_card
from tests.payments.write_proxy import RecordingProxy, max_in_any_second
from tests.renewals.conftest import payment_intents_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def proxy(settings):
    """localstripe behind the recording proxy, for this process and the ones it forks."""
    with RecordingProxy(settings.STRIPE_API_BASE) as recording:
        settings.STRIPE_API_BASE = recording.url
        gateways.configure()
        try:
            yield recording
        finally:
            settings.STRIPE_API_BASE = recording.upstream
            gateways.configure()


class StampingClient(stripe.RequestsClient):
    """The SDK's own HTTP client, noting when each write leaves for the processor."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.write_times: list[float] = []

    def request(self, method, url, headers, post_data=None):
        if method.lower() in ("post", "delete"):
            self.write_times.append(time.time())
        return super().request(method, url, headers, post_data)


def _writer(count: int, tag: str, barrier, results, threads: int = 1) -> None:
    # The limited client as configure() makes it, with a fresh HTTP session of its own (a keep-alive
    # socket inherited through fork would be shared) that notes its send times. With threads > 1,
    # `count` writes on each of that many threads, as a batch of renewals is charged
    # (renewals.services.charging.charge_renewals; the SDK keeps a session per thread).
    stamping = StampingClient(timeout=django_settings.STRIPE_HTTP_TIMEOUT_SECONDS)
    stripe.default_http_client = gateways.WriteLimitedClient(stamping)
    barrier.wait()
    done = [0] * threads

    def write(k: int) -> None:
        for _ in range(count):
            stripe.PaymentIntent.create(
                amount=1800,
                currency="cny",
                payment_method_types=["card"],
                metadata={"limiter_run": tag},
                api_key=django_settings.STRIPE_SECRET_KEY,
                max_network_retries=0,
            )
            done[k] += 1

    others = [threading.Thread(target=write, args=(k,)) for k in range(1, threads)]
    try:
        for other in others:
            other.start()
        write(0)
    finally:
        for other in others:
            other.join()
        results.put((sum(done), stamping.write_times))


def test_four_processes_writing_at_once_never_exceed_the_limit_in_any_second_and_all_finish(settings):
    settings.STRIPE_WRITE_RATE_LIMIT = 10
    settings.STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS = 30  # nobody gives up: all the work must get through
    processor_limit.reset_write_stats()
    tag, processes, each = uuid.uuid4().hex, 4, 15
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(processes + 1), ctx.Queue()
    children = [ctx.Process(target=_writer, args=(each, tag, barrier, results)) for _ in range(processes)]
    for child in children:
        child.start()
    barrier.wait()
    reports = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(10)

    total = processes * each
    assert [done for done, _times in reports] == [each] * processes
    sent = sorted(t for _done, times in reports for t in times)
    assert len(sent) == total
    assert max_in_any_second(sent) <= 10, [round(t - sent[0], 3) for t in sent]

    intents = [
        pi
        for pi in stripe.PaymentIntent.list(limit=100, api_key=settings.STRIPE_SECRET_KEY).auto_paging_iter()
        if (pi["metadata"] or {}).get("limiter_run") == tag
    ]
    assert len(intents) == total
    assert max(Counter(pi["created"] for pi in intents).values()) <= 10  # localstripe's 1-second stamps

    stats = processor_limit.write_stats()
    assert (stats.writes, stats.refused) == (total, 0)
    assert 0 < stats.max_window <= 10
    # How many writes had to wait depends on how fast the four processes start (a slow start
    # spreads them out), so it is not asserted: the limit above is the behaviour.
    assert stats.waited <= total


def test_two_processes_of_four_threads_each_never_exceed_the_limit_in_any_second_and_all_finish(settings):
    """The batch charge path's shape: several threads per worker process, each writing."""
    settings.STRIPE_WRITE_RATE_LIMIT = 10
    settings.STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS = 30
    processor_limit.reset_write_stats()
    tag, processes, threads, each = uuid.uuid4().hex, 2, 4, 5
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(processes + 1), ctx.Queue()
    children = [ctx.Process(target=_writer, args=(each, tag, barrier, results, threads)) for _ in range(processes)]
    for child in children:
        child.start()
    barrier.wait()
    reports = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(10)

    total = processes * threads * each
    assert [done for done, _times in reports] == [threads * each] * processes
    sent = sorted(t for _done, times in reports for t in times)
    assert len(sent) == total
    assert max_in_any_second(sent) <= 10, [round(t - sent[0], 3) for t in sent]
    intents = [
        pi
        for pi in stripe.PaymentIntent.list(limit=100, api_key=settings.STRIPE_SECRET_KEY).auto_paging_iter()
        if (pi["metadata"] or {}).get("limiter_run") == tag
    ]
    assert len(intents) == total
    assert max(Counter(pi["created"] for pi in intents).values()) <= 10
    stats = processor_limit.write_stats()
    assert (stats.writes, stats.refused) == (total, 0)
    assert 0 < stats.max_window <= 10


def test_every_gateway_write_goes_through_the_limiter_and_is_counted(proxy, customer, line, package):
    """Counted at the processor's door: a write sent by any other path than the SDK's client that
    configure() installs would make the proxy's count larger than the limiter's."""
    assert isinstance(stripe.default_http_client, gateways.WriteLimitedClient)
    processor_limit.reset_write_stats()

    stripe_customer = gateways.ensure_customer(customer)
    gateways.create_setup_intent(customer_id=stripe_customer.id, method_type="card")
    card = gateways.attach_payment_method(customer_id=stripe_customer.id, payment_method_id=create_card())
    gateways.set_default_payment_method(customer_id=stripe_customer.id, payment_method_id=card.id)
    paid = on_session.purchase_package(user=customer, line=line, package=package, payment_method_id=card.id)
    assert paid.status == Charge.Status.SUCCEEDED
    refunds.refund_charge(charge_id=paid.pk, amount_minor=100)
    secure = gateways.attach_payment_method(
        customer_id=stripe_customer.id, payment_method_id=create_card("4000002500003155")
    )
    outcome = gateways.charge_on_session(
        charge=make_charge(user=customer, line=line, package=package),
        customer_id=stripe_customer.id,
        payment_method_id=secure.id,
    )
    assert outcome.kind is gateways.OutcomeKind.AUTHENTICATION_REQUIRED
    gateways.cancel_payment_intent(outcome.payment_intent_id)
    gateways.detach_payment_method(secure.id)

    writes = proxy.writes()
    kinds = {
        (
            method,
            "/".join("{id}" if part.startswith(("cus_", "pm_", "pi_", "seti_")) else part for part in path.split("/")),
        )
        for _t, method, path in writes
    }
    assert kinds >= {
        ("POST", "/v1/customers"),
        ("POST", "/v1/customers/{id}"),
        ("POST", "/v1/setup_intents"),
        ("POST", "/v1/payment_methods"),
        ("POST", "/v1/payment_methods/{id}/attach"),
        ("POST", "/v1/payment_intents"),
        ("POST", "/v1/refunds"),
        ("POST", "/v1/payment_intents/{id}/cancel"),
        ("POST", "/v1/payment_methods/{id}/detach"),
    }, kinds
    assert processor_limit.write_stats().writes == len(writes)


def _take_the_seconds_only_slot(settings) -> None:
    """Limit 1 write a second, taken by someone else just now; a write now would wait, more than the
    0.3 s it may. The window is stretched to a minute, so the slot is still taken however slow the
    machine is between here and the test's own write; `_give_the_slot_back` shortens it again."""
    settings.STRIPE_WRITE_RATE_LIMIT = 1
    settings.STRIPE_RATE_LIMIT_MARGIN_SECONDS = 59.0
    settings.STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS = 0.3
    for _ in range(30):  # the set-up's own writes leave the log within ~2 s (their key expires)
        try:
            processor_limit.acquire_write(method="POST", path="/elsewhere")
            return
        except processor_limit.WriteNotSent:
            time.sleep(0.5)
    raise AssertionError("the set-up's writes never left the limiter's log")


def _give_the_slot_back(settings) -> None:
    """Back to a one-second window, and wait it out: the limiter runs on Redis's clock, so the slot
    frees in real time."""
    settings.STRIPE_RATE_LIMIT_MARGIN_SECONDS = 0.1
    time.sleep(processor_limit.window_seconds() + 0.1)


def _renewal_charging(rule) -> Renewal:
    now = timezone.now()
    renewal = triggers.open_renewal(rule=rule, now=now, trigger="data")
    assert claims.claim_due_renewals(now=now, renewal_ids=[renewal.pk]) == [renewal.pk]
    return renewal


@pytest.fixture
def renewing_rule(customer, line, package, add_card):
    add_card()
    line.data_remaining_bytes = 100 * MB
    line.save()
    return make_rule(line=line, package=package)


def _claim_and_charge(renewal: Renewal) -> Renewal:
    assert claims.claim_due_renewals(now=timezone.now(), renewal_ids=[renewal.pk]) == [renewal.pk]
    return charging.charge_renewal(renewal_id=renewal.pk)


def test_renewal_charge_refused_after_the_bounded_wait_sends_nothing_and_is_retried_without_costing_an_attempt(
    renewing_rule, settings, caplog
):
    renewal = _renewal_charging(renewing_rule)
    _take_the_seconds_only_slot(settings)
    processor_limit.reset_write_stats()

    with caplog.at_level(logging.INFO):
        renewal = charging.charge_renewal(renewal_id=renewal.pk)

    assert (renewal.status, renewal.attempts, renewal.failures) == (Renewal.Status.DUE, 0, 0)
    assert renewal.next_attempt_at is not None
    assert not Charge.objects.filter(renewal=renewal).exists()  # no attempt left on the ledger
    assert payment_intents_for(renewal) == []
    assert (processor_limit.write_stats().refused, processor_limit.write_stats().writes) == (1, 0)
    assert "renewal_attempt_released" in caplog.text and "reason=rate_limited" in caplog.text

    _give_the_slot_back(settings)
    renewal = _claim_and_charge(renewal)
    assert (renewal.status, renewal.attempts, renewal.failures) == (Renewal.Status.SUCCEEDED, 1, 0)
    assert len(payment_intents_for(renewal)) == 1


def test_pay_now_refused_by_the_limiter_tells_the_customer_and_leaves_the_renewal_as_it_was(
    renewing_rule, customer, settings
):
    renewal = _renewal_charging(renewing_rule)
    renewal.status, renewal.failures = Renewal.Status.RETRY_SCHEDULED, 1
    renewal.next_attempt_at = later = timezone.now() + timedelta(hours=1)
    renewal.save()
    method_id = gateways.default_payment_method_id(customer)
    _take_the_seconds_only_slot(settings)

    with pytest.raises(errors.NotPayable) as refused:
        pay_now.pay_renewal_now(user=customer, renewal=renewal, payment_method_id=method_id)

    assert "busy" in refused.value.user_message
    renewal.refresh_from_db()
    assert (renewal.status, renewal.attempts, renewal.failures, renewal.next_attempt_at) == (
        Renewal.Status.RETRY_SCHEDULED,
        0,
        1,
        later,
    )
    assert not Charge.objects.filter(renewal=renewal).exists()
    assert payment_intents_for(renewal) == []


def test_purchase_refused_by_the_limiter_shows_a_form_error_and_charges_nothing(
    customer_client, customer, line, package, add_card, settings
):
    card = add_card()
    _take_the_seconds_only_slot(settings)

    response = customer_client.post(
        f"/payments/lines/{line.pk}/buy/", {"package": package.pk, "payment_method": card.id}
    )

    assert response.status_code == 400
    assert "The payment processor is busy right now" in response.content.decode()
    assert not Charge.objects.filter(user=customer).exists()


def _redis_server(port: int, tmp_path) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    from bench.common import wait_for_port

    wait_for_port(port, process=process, timeout=20)
    return process


def test_with_the_limiters_redis_stopped_nothing_is_sent_and_the_renewal_goes_through_once_it_is_back(
    renewing_rule, settings, tmp_path, caplog
):
    from bench.common import free_port, stop

    port = free_port()
    redis_process = _redis_server(port, tmp_path)
    settings.STRIPE_RATE_LIMIT_REDIS_URL = f"redis://127.0.0.1:{port}/0"
    try:
        renewal = _renewal_charging(renewing_rule)
        stop(redis_process)

        with caplog.at_level(logging.INFO):
            renewal = charging.charge_renewal(renewal_id=renewal.pk)

        assert (renewal.status, renewal.attempts, renewal.failures) == (Renewal.Status.DUE, 0, 0)
        assert not Charge.objects.filter(renewal=renewal).exists()
        assert payment_intents_for(renewal) == []
        assert "stripe_write_refused reason=limiter_unavailable" in caplog.text
        assert processor_limit.write_stats() is None

        redis_process = _redis_server(port, tmp_path)
        renewal = _claim_and_charge(renewal)
        assert (renewal.status, renewal.attempts, renewal.failures) == (Renewal.Status.SUCCEEDED, 1, 0)
        assert len(payment_intents_for(renewal)) == 1
        assert processor_limit.write_stats().writes == 1
    finally:
        stop(redis_process)


def test_operations_page_shows_the_write_counters(customer, settings):
    from tests.console.conftest import admin_client_for

    _take_the_seconds_only_slot(settings)
    processor_limit.reset_write_stats()
    _give_the_slot_back(settings)
    processor_limit.acquire_write(method="POST", path="/one")
    with pytest.raises(processor_limit.WriteNotSent):
        processor_limit.acquire_write(method="POST", path="/two")

    client, _operator = admin_client_for("support")
    html = client.get("/admin/operations/").content.decode()
    assert 'id="ops-writes">Sent: 1<' in html
    assert 'class="stale">Not sent, processor busy: 1<' in html
    assert 'id="ops-writes-max">Most in any second: 1<' in html
