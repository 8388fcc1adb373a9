"""The network partner's command endpoint as the line model talks to it: a real HTTP server on
127.0.0.1 (the edge we fake), spoken to over the wire by the real sending code. It records every
request it *received*, per ICCID, with the answer it gave, and can be told how to answer: a 2xx,
a 4xx, a 5xx, or a 3xx redirect (to a path it also serves, so a followed redirect would show).

What the partner holds is what it would apply: the 2xx-answered commands of a line, in the order
received, each dropped if its sequence is not above the last one applied (the contract in
docs/network-outbox.md). Nothing here reads our database."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMANDS_PATH = "/commands"
REDIRECT_TARGET = "/moved-commands"


@dataclass(frozen=True)
class Received:
    path: str
    id: int
    command: str
    iccid: str
    sequence: int
    code: int

    @property
    def applied(self) -> bool:
        """Taken by the partner: a 2xx at the configured path itself."""
        return 200 <= self.code < 300 and self.path == COMMANDS_PATH


@dataclass(frozen=True)
class PartnerLine:
    """The partner's two switches of one line (a line starts with both on: active, data flowing)."""

    service_on: bool = True
    data_blocked: bool = False


class PartnerStandIn:
    def __init__(self):
        self.received: list[Received] = []
        self.answer = 200
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with stand_in.lock:
                    # A redirect's target answers 200: if a sender followed it, it would look delivered.
                    code = 200 if self.path == REDIRECT_TARGET else stand_in.answer
                    stand_in.received.append(
                        Received(
                            path=self.path,
                            id=int(body.get("id", 0)),
                            command=str(body.get("command", "")),
                            iccid=str(body.get("iccid", "")),
                            sequence=int(body.get("sequence", 0)),
                            code=code,
                        )
                    )
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", REDIRECT_TARGET)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{COMMANDS_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PartnerStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.answer = 200

    def received_for(self, iccid: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.iccid == iccid]

    def all_received(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def state_of(self, iccid: str) -> PartnerLine:
        """The line as the partner holds it: its applied commands replayed in received order, a
        command whose sequence is not above the last applied one dropped."""
        service_on, data_blocked, last = True, False, 0
        for r in self.received_for(iccid):
            if not r.applied or r.sequence <= last:
                continue
            last = r.sequence
            if r.command == "suspend":
                service_on = False
            elif r.command == "resume":
                service_on = True
            elif r.command == "block_data":
                data_blocked = True
            elif r.command == "unblock_data":
                data_blocked = False
        return PartnerLine(service_on=service_on, data_blocked=data_blocked)
