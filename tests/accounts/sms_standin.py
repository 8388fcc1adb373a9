"""The SMS providers at the edge, as a process of its own on 127.0.0.1, spoken to over HTTP by the
real backends (accounts/sms.py). Run by the `twilio_standin` and `http_standin` fixtures; prints
"listening <port>" once it answers.

    python tests/accounts/sms_standin.py twilio --account-sid AC... --auth-token TOKEN
    python tests/accounts/sms_standin.py http --secret SECRET

`twilio` is Twilio's Messages API (POST /2010-04-01/Accounts/{AccountSid}/Messages.json, basic
auth, form fields To, Body and From or MessagingServiceSid), answering with the bodies Twilio
documents: 201 and a Message resource, or {"code", "message", "more_info", "status"} (20003 for
credentials, 21211 for an invalid 'To' number, 21602/21604/21606 for missing fields, 20429 too
many requests, 20500 an internal error). Twilio's test numbers decide the answer, as with test
credentials: +15005550001 is invalid (21211), +15005550009 not a mobile (21614).

`http` is the generic gateway of docs/notifications.md#sms: JSON {"id", "to", "body"}, checked
against X-SMS-Signature; 200 {"id", "status": "accepted"}, 401 for a bad signature, 422
{"error": "invalid_number"} for +15005550001, and a message id already accepted is accepted again
without a second delivery.

Both record every request with what was wrong with its shape ("problems") and the status they
answered: GET /_standin/received. POST /_standin/answers {"answers": [500, 429, 0, ...]} makes the
next requests fail with those statuses (0: no answer for --hang-seconds, then 503), then normal
answers resume; POST /_standin/reset."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import re
import sys
import threading
import time
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
INVALID_NUMBER = "+15005550001"
NOT_MOBILE = "+15005550009"
MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json$")
SIGNATURE_TOLERANCE_SECONDS = 300


def twilio_error(status: int, code: int, message: str) -> tuple[int, dict]:
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


QUEUED_TWILIO_ERRORS = {
    429: (20429, "Too Many Requests"),
    500: (20500, "An internal server error has occurred"),
    503: (20503, "Service unavailable"),
}


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[dict] = []
        self.answers: list[int] = []
        self.accepted_ids: set[str] = set()
        self.hang_seconds = 0.0

    def next_forced(self) -> int | None:
        """The next queued status; 0 means: answer nothing for --hang-seconds (the sender's
        timeout), then 503."""
        with self.lock:
            forced = self.answers.pop(0) if self.answers else None
        if forced == 0:
            time.sleep(self.hang_seconds)
            return 503
        return forced


def twilio_answer(handler: BaseHTTPRequestHandler, state: State, options, raw: bytes) -> tuple[int, dict, dict]:
    """(status, body, record) for one request to the Messages API."""
    problems: list[str] = []
    match = MESSAGES_PATH.match(handler.path)
    if handler.command != "POST" or not match:
        return (*twilio_error(404, 20404, "The requested resource was not found"), {"problems": ["path"]})
    auth = handler.headers.get("Authorization", "")
    user, password = "", ""
    if auth.startswith("Basic "):
        user, _sep, password = base64.b64decode(auth[6:]).decode().partition(":")
    if user != options.account_sid or password != options.auth_token or match["sid"] != options.account_sid:
        return (
            *twilio_error(401, 20003, "Authentication Error - invalid username"),
            {"problems": ["auth"], "auth": False},
        )
    if not handler.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        problems.append("content-type")
    form = {key: values[0] for key, values in parse_qs(raw.decode(), keep_blank_values=True).items()}
    fields = sorted(form)
    to, body = form.get("To", ""), form.get("Body", "")
    sender = form.get("From") or form.get("MessagingServiceSid") or ""
    record = {"auth": True, "fields": fields, "to": to, "body": body, "sender": sender}
    if not to:
        return (*twilio_error(400, 21604, "A 'To' phone number is required."), {**record, "problems": ["To"]})
    if not body:
        return (*twilio_error(400, 21602, "Message body is required."), {**record, "problems": ["Body"]})
    if not sender or ("From" in form) == ("MessagingServiceSid" in form):
        return (
            *twilio_error(400, 21606, "The 'From' phone number provided is not valid."),
            {**record, "problems": ["From"]},
        )
    if len(body) > 1600:
        problems.append("Body too long")
    if set(form) - {"To", "Body", "From", "MessagingServiceSid"}:
        problems.append("unexpected fields")
    record["problems"] = problems
    forced = state.next_forced()
    if forced is not None:
        code, message = QUEUED_TWILIO_ERRORS.get(forced, (forced, "error"))
        return (*twilio_error(forced, code, message), record)
    if to == INVALID_NUMBER or not E164.match(to):
        return (*twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}"), record)
    if to == NOT_MOBILE:
        return (*twilio_error(400, 21614, f"'To' number {to} is not a valid mobile number"), record)
    sid = "SM" + uuid.uuid4().hex
    now = formatdate(usegmt=False).replace("-0000", "+0000")
    message = {
        "account_sid": options.account_sid,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued" if "From" in form else "accepted",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{options.account_sid}/Messages/{sid}/Media.json"},
        "to": to,
        "uri": f"/2010-04-01/Accounts/{options.account_sid}/Messages/{sid}.json",
    }
    return 201, message, {**record, "delivered": True}


def http_answer(handler: BaseHTTPRequestHandler, state: State, options, raw: bytes) -> tuple[int, dict, dict]:
    if handler.command != "POST" or handler.path != "/sms":
        return 404, {"error": "not_found"}, {"problems": ["path"]}
    header = handler.headers.get("X-SMS-Signature", "")
    parts = dict(part.partition("=")[::2] for part in header.split(",") if "=" in part)
    timestamp, digest = parts.get("t", ""), parts.get("v1", "")
    expected = hmac.new(options.secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    if (
        not timestamp.isdigit()
        or abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS
        or not hmac.compare_digest(expected, digest)
    ):
        return 401, {"error": "bad_signature"}, {"problems": ["signature"], "auth": False}
    problems = []
    if handler.headers.get("Content-Type") != "application/json":
        problems.append("content-type")
    try:
        payload = json.loads(raw)
    except ValueError:
        return 400, {"error": "not_json"}, {"problems": ["json"], "auth": True}
    if not isinstance(payload, dict) or set(payload) != {"id", "to", "body"}:
        return 400, {"error": "bad_fields"}, {"problems": ["fields"], "auth": True}
    record = {"auth": True, "fields": sorted(payload), **{k: payload[k] for k in ("id", "to", "body")}}
    if not E164.match(str(payload["to"])) or not payload["body"] or not payload["id"]:
        problems.append("values")
    record["problems"] = problems
    forced = state.next_forced()
    if forced is not None:
        return forced, {"error": "unavailable"}, record
    if payload["to"] == INVALID_NUMBER:
        return 422, {"error": "invalid_number"}, record
    with state.lock:
        duplicate = payload["id"] in state.accepted_ids
        state.accepted_ids.add(payload["id"])
    return 200, {"id": payload["id"], "status": "accepted"}, {**record, "delivered": not duplicate}


def serve(options) -> None:
    state = State()
    state.hang_seconds = options.hang_seconds
    answer = twilio_answer if options.kind == "twilio" else http_answer

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: object) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            if self.path == "/_standin/received":
                with state.lock:
                    return self._reply(200, state.received)
            return self._reply(404, {})

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/_standin/answers":
                with state.lock:
                    state.answers.extend(json.loads(raw)["answers"])
                return self._reply(200, {})
            if self.path == "/_standin/reset":
                with state.lock:
                    state.received.clear()
                    state.answers.clear()
                    state.accepted_ids.clear()
                return self._reply(200, {})
            status, body, record = answer(self, state, options, raw)
            record = {"path": self.path, "delivered": False, **record, "status": status}
            with state.lock:
                state.received.append(record)
            return self._reply(status, body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", options.port), Handler)
    print(f"listening {server.server_port}", flush=True)
    server.serve_forever()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["twilio", "http"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-sid", default="")
    parser.add_argument("--auth-token", default="")
    parser.add_argument("--secret", default="")
    parser.add_argument("--hang-seconds", type=float, default=5.0)
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
