"""Refunds reconciled with the processor, against the real localstripe: a refund whose answer was
lost (the processor made it, our request timed out) ends on our ledger as the processor holds it,
and blocks a second refund until it is known; a charge.refunded event moves the ledger to what the
processor says, never to what the event says."""

import asyncio
import json
import threading
import time

import pytest
import stripe
from aiohttp import ClientSession, ClientTimeout, web
from django.conf import settings as django_settings

from payments import gateways, tasks
from payments.models import Charge
from payments.services import errors, refunds
from tests.payments.test_refunds import refunded_at_stripe
from tests.payments.test_webhooks import post_event, sign


class LostAnswerProxy:
    """In front of localstripe: every request goes through, but the answer to a refund is held
    back longer than the client waits, as a processor that did the work and then went quiet."""

    def __init__(self, upstream: str, hold_seconds: float):
        self.upstream, self.hold_seconds = upstream.rstrip("/"), hold_seconds
        self.refund_made = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=60))

        async def handle(request):
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            async with self._session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as up:
                data, status = await up.read(), up.status
                keep = {
                    k: v for k, v in up.headers.items() if k.lower() in ("content-type", "request-id", "stripe-version")
                }
            if request.method == "POST" and request.path == "/v1/refunds":
                self.refund_made.set()
                await asyncio.sleep(self.hold_seconds)
            return web.Response(status=status, body=data, headers=keep)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        async def stop():
            await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def lost_refund_answers(settings):
    with LostAnswerProxy(settings.STRIPE_API_BASE, hold_seconds=3) as proxy:
        upstream = settings.STRIPE_API_BASE
        settings.STRIPE_API_BASE = proxy.url
        settings.STRIPE_HTTP_TIMEOUT_SECONDS = 1
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        gateways.configure()
        try:
            yield proxy
        finally:
            settings.STRIPE_API_BASE = upstream
            gateways.configure()


def test_a_refund_whose_answer_was_lost_ends_on_the_ledger_as_the_processor_made_it(
    paid_charge, lost_refund_answers, settings
):  # noqa: F811
    try:
        refunds.refund_charge(charge_id=paid_charge.pk)
    except errors.PaymentError:
        pass  # the operator is told the processor did not answer
    # The processor did make it (the proxy saw its answer go by), whatever our request heard.
    assert lost_refund_answers.refund_made.wait(60)
    assert refunded_at_stripe(paid_charge) == paid_charge.amount_minor

    # No second refund while the first is not known: localstripe would make it (and so could Stripe
    # past its idempotency window), refunding the customer twice.
    charge = Charge.objects.get(pk=paid_charge.pk)
    if charge.refunded_minor < charge.amount_minor:
        with pytest.raises(errors.PaymentError):
            refunds.refund_charge(charge_id=paid_charge.pk)

    tasks.reconcile_pending_purchases()  # the beat sweep
    charge = Charge.objects.get(pk=paid_charge.pk)
    assert (charge.status, charge.refunded_minor) == (Charge.Status.REFUNDED, charge.amount_minor)
    assert refunded_at_stripe(paid_charge) == paid_charge.amount_minor


def test_a_charge_refunded_event_sets_the_ledger_to_what_the_processor_holds_not_what_the_event_says(
    client, endpoint, paid_charge
):  # noqa: F811
    # A refund made at the processor without us (the dashboard, or a request whose answer we lost).
    stripe.Refund.create(
        payment_intent=paid_charge.payment_intent_id, amount=3000, api_key=django_settings.STRIPE_SECRET_KEY
    )
    latest = stripe.PaymentIntent.retrieve(paid_charge.payment_intent_id, api_key=django_settings.STRIPE_SECRET_KEY)[
        "latest_charge"
    ]
    processor_charge = stripe.Charge.retrieve(
        latest if isinstance(latest, str) else latest["id"], api_key=django_settings.STRIPE_SECRET_KEY
    ).to_dict()
    # What the event claims is not what the processor holds: only the latter counts.
    claimed = dict(
        processor_charge,
        amount_refunded=paid_charge.amount_minor,
        refunded=True,
        payment_intent=paid_charge.payment_intent_id,
    )
    body = json.dumps(
        {
            "id": "evt_refunded",
            "object": "event",
            "type": "charge.refunded",
            "api_version": "2017-08-15",
            "livemode": False,
            "created": int(time.time()),
            "data": {"object": claimed},
        },
        default=str,
    ).encode()

    assert post_event(client, endpoint, body, sign(body, endpoint.secret)).status_code == 200

    charge = Charge.objects.get(pk=paid_charge.pk)
    assert (charge.status, charge.refunded_minor) == (Charge.Status.SUCCEEDED, 3000)
