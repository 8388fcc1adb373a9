"""A recording HTTP proxy in front of localstripe: what the processor receives, with the time each
request arrived, whichever client sent it (a write that bypassed our limiter shows up here too)."""

from __future__ import annotations

import asyncio
import threading
import time

from aiohttp import ClientSession, ClientTimeout, web


class RecordingProxy:
    def __init__(self, upstream: str, *, before=None):
        self.upstream = upstream.rstrip("/")
        # before(method, path): run (in a thread) before a request is forwarded, e.g. another
        # client acting on the processor at exactly that moment.
        self.before = before
        self.requests: list[tuple[float, str, str]] = []  # (arrival time, method, path)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def writes(self, prefix: str = "/v1/") -> list[tuple[float, str, str]]:
        return [r for r in list(self.requests) if r[1] in ("POST", "DELETE") and r[2].startswith(prefix)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=30))

        async def handle(request):
            self.requests.append((time.time(), request.method, request.path))
            if self.before is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.before, request.method, request.path)
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            async with self._session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as up:
                data = await up.read()
                keep = {
                    k: v for k, v in up.headers.items() if k.lower() in ("content-type", "request-id", "stripe-version")
                }
                return web.Response(status=up.status, body=data, headers=keep)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def max_in_any_second(times: list[float], *, window: float = 1.0) -> int:
    """The largest number of the given instants inside any half-open window [t, t + window)."""
    times = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - window:
            first += 1
        best = max(best, last - first + 1)
    return best
