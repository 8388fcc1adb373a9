#!/usr/bin/env python3
"""A small SM-DP+ speaking the operator side of GSMA SGP.22 ES2+ (JSON over HTTP(S)), for
development and tests: no SM-DP+ runs here (docs/provisioning.md, "The stand-in").

    python scripts/smdp_standin.py --host 127.0.0.1 --port 8430 \
        [--callback-url URL --callback-secret S] [--tls-cert C --tls-key K [--client-ca CA]]

ES2+ functions (POST, JSON envelope `header.functionRequesterIdentifier/functionCallIdentifier`;
answers `header.functionExecutionStatus.status` "Executed-Success" or "Failed" with
`statusCodeData{subjectCode, reasonCode, message}`):
    /gsma/rsp2/es2plus/downloadOrder   {iccid?, eid?, profileType?} -> {iccid}
    /gsma/rsp2/es2plus/confirmOrder    {iccid, releaseFlag, matchingId?, eid?} -> {matchingId, smdpAddress}
    /gsma/rsp2/es2plus/cancelOrder     {iccid, finalProfileStatusIndicator}
    /gsma/rsp2/es2plus/releaseProfile  {iccid}

A profile moves available -> allocated (DownloadOrder) -> linked (with an EID) -> confirmed ->
released -> downloaded -> installed. A functionCallIdentifier seen before gets the answer it got
the first time, without a second effect: an order retried after a lost answer is not placed twice.

Control (loopback only, for tests and the demo):
    POST /admin/reset                       empty pool, history and failures
    POST /admin/failure {"mode": "down"|"slow"|"no_profile"|"error"|"ok", "seconds"?, "subjectCode"?,
                         "reasonCode"?, "message"?, "times"?}
    POST /admin/pool {"iccids": [...], "profileType"?}   profiles the operator imported
    GET  /admin/state                       profiles and every request received (with its effect)
    POST /test/device/<iccid>/<step>        play a device: download | install | enable | disable |
                                            delete; sends HandleDownloadProgressInfo to the callback
                                            (body may override {"callbackUrl", "callbackSecret"})
"""

from __future__ import annotations

import argparse
import json
import ssl
import threading
import time
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count

ES2 = "/gsma/rsp2/es2plus/"
SMDP_ADDRESS = "smdp.standin.test"
# The notification points as the SM-DP+ reports them (SGP.22 5.3.5 HandleDownloadProgressInfo):
# 3 BPP download, 4 BPP installation; 5 deleted, 6 enabled, 7 disabled as SM-DP+s report the
# later profile events.
DEVICE_STEPS = {"download": 3, "install": 4, "delete": 5, "enable": 6, "disable": 7}
STEP_STATE = {"download": "downloaded", "install": "installed", "enable": "enabled", "disable": "disabled"}
STEP_STATE["delete"] = "deleted"


def _status(status: str, subject: str = "", reason: str = "", message: str = "") -> dict:
    out: dict = {"status": status}
    if status != "Executed-Success":
        out["statusCodeData"] = {"subjectCode": subject, "reasonCode": reason, "message": message}
    return out


class SmdpStandIn:
    def __init__(self, *, callback_url: str = "", callback_secret: str = ""):
        self.lock = threading.RLock()
        self.callback_url = callback_url
        self.callback_secret = callback_secret
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.profiles: dict[str, dict] = {}
            self.calls: list[dict] = []  # every ES2+ request, with the effect it had
            self.answers: dict[tuple[str, str], dict] = {}  # (function, functionCallIdentifier) -> answer
            self.failure: dict = {"mode": "ok"}
            self.notifications: list[dict] = []
            self.serial = count(1)

    # --- ES2+ ---------------------------------------------------------------------------------
    def handle(self, function: str, body: dict) -> tuple[int, dict]:
        header = body.get("header") or {}
        fci = str(header.get("functionCallIdentifier", ""))
        requester = str(header.get("functionRequesterIdentifier", ""))
        with self.lock:
            failure = dict(self.failure)
            if failure.get("times") is not None:
                # The failure applies to this many more calls, then the stand-in answers normally.
                self.failure["times"] -= 1
                if self.failure["times"] <= 0:
                    self.failure = {"mode": "ok"}
        mode = failure.get("mode", "ok")
        if mode == "down":
            return 503, {"error": "service unavailable"}
        with self.lock:
            replay = self.answers.get((function, fci)) if fci else None
            if replay is not None:
                self.calls.append({"function": function, "fci": fci, "effect": "replayed", "answer": replay})
                return 200, replay
            if not fci or not requester:
                out = self._answer(fci, _status("Failed", "1.1", "2.1", "functionCallIdentifier missing"))
            elif mode == "error":
                out = self._answer(
                    fci,
                    _status(
                        "Failed",
                        failure.get("subjectCode", "8.1"),
                        failure.get("reasonCode", "4.2"),
                        failure.get("message", "Execution error"),
                    ),
                )
            elif mode == "no_profile" and function == "downloadOrder":
                out = self._answer(fci, _status("Failed", "8.2.5", "3.7", "No more profile available"))
            else:
                out = getattr(self, "_" + function)(fci, body)
            effect = out["header"]["functionExecutionStatus"]["status"]
            self.calls.append({"function": function, "fci": fci, "effect": effect, "answer": out})
            self.answers[(function, fci)] = out
        if mode == "slow":
            # Done, answered late: the caller times out not knowing the order was placed.
            time.sleep(float(failure.get("seconds", 5)))
        return 200, out

    def _answer(self, fci: str, status: dict, **fields) -> dict:
        return {"header": {"functionExecutionStatus": status}, **fields}

    def _downloadOrder(self, fci: str, body: dict) -> dict:
        iccid = body.get("iccid")
        if iccid:
            profile = self.profiles.get(iccid)
            if profile is None:
                return self._answer(fci, _status("Failed", "8.2.1", "3.9", "Profile ICCID unknown"))
            if profile["state"] != "available":
                return self._answer(fci, _status("Failed", "8.2.1", "3.7", "Profile ICCID not available"))
        else:
            profile_type = body.get("profileType") or "default"
            profile = next(
                (p for p in self.profiles.values() if p["state"] == "available" and p["imported"] is False),
                None,
            )
            if profile is None:
                iccid = f"8999{int(time.time()) % 10**8:08d}{next(self.serial):07d}"
                profile = {"iccid": iccid, "profileType": profile_type, "state": "available", "imported": False}
                self.profiles[iccid] = profile
        profile["state"] = "linked" if body.get("eid") else "allocated"
        profile["eid"] = body.get("eid") or ""
        profile["downloadOrder"] = fci
        return self._answer(fci, _status("Executed-Success"), iccid=profile["iccid"])

    def _confirmOrder(self, fci: str, body: dict) -> dict:
        profile = self.profiles.get(body.get("iccid") or "")
        if profile is None:
            return self._answer(fci, _status("Failed", "8.2.1", "3.9", "Profile ICCID unknown"))
        if profile["state"] not in ("allocated", "linked"):
            return self._answer(fci, _status("Failed", "8.2.1", "3.5", "Invalid transition"))
        profile["matchingId"] = body.get("matchingId") or f"MID-{profile['iccid'][-8:]}-{next(self.serial):04d}"
        profile["state"] = "released" if body.get("releaseFlag") else "confirmed"
        return self._answer(
            fci, _status("Executed-Success"), matchingId=profile["matchingId"], smdpAddress=SMDP_ADDRESS
        )

    def _releaseProfile(self, fci: str, body: dict) -> dict:
        profile = self.profiles.get(body.get("iccid") or "")
        if profile is None:
            return self._answer(fci, _status("Failed", "8.2.1", "3.9", "Profile ICCID unknown"))
        if profile["state"] != "confirmed":
            return self._answer(fci, _status("Failed", "8.2.1", "3.5", "Invalid transition"))
        profile["state"] = "released"
        return self._answer(fci, _status("Executed-Success"))

    def _cancelOrder(self, fci: str, body: dict) -> dict:
        profile = self.profiles.get(body.get("iccid") or "")
        if profile is None:
            return self._answer(fci, _status("Failed", "8.2.1", "3.9", "Profile ICCID unknown"))
        if profile["state"] in ("downloaded", "installed"):
            return self._answer(fci, _status("Failed", "8.2.1", "3.5", "Invalid transition"))
        final = body.get("finalProfileStatusIndicator") or "Available"
        profile["state"] = "available" if final == "Available" else "unavailable"
        return self._answer(fci, _status("Executed-Success"))

    # --- the device ----------------------------------------------------------------------------
    def play_device(self, iccid: str, step: str, overrides: dict) -> tuple[int, dict]:
        with self.lock:
            profile = self.profiles.get(iccid)
            if profile is None or step not in DEVICE_STEPS:
                return 404, {"error": "unknown profile or step"}
            if step in ("download", "install") and profile["state"] not in ("released", "downloaded", "installed"):
                return 409, {"error": f"profile is {profile['state']}"}
            profile["state"] = STEP_STATE[step]
            n = next(self.serial)
        url = overrides.get("callbackUrl") or self.callback_url
        secret = overrides.get("callbackSecret", self.callback_secret)
        notification = {
            "header": {"functionRequesterIdentifier": SMDP_ADDRESS, "functionCallIdentifier": f"HDPI-{iccid}-{n}"},
            "eid": profile.get("eid") or "89049032000000000000000000000001",
            "iccid": iccid,
            "profileType": profile.get("profileType", "default"),
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "notificationPointId": DEVICE_STEPS[step],
            "notificationPointStatus": _status("Executed-Success"),
        }
        if overrides.get("notification"):
            notification.update(overrides["notification"])
        code = 0
        if url:
            request = urllib.request.Request(
                url,
                data=json.dumps(notification).encode(),
                headers={"Content-Type": "application/json", "X-Admin-Protocol": "gsma/rsp/v2.2.0"},
                method="POST",
            )
            if secret:
                request.add_header("X-ES2-Callback-Secret", secret)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    code = response.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except OSError:
                code = -1
        with self.lock:
            self.notifications.append({"notification": notification, "code": code})
        return 200, {"sent": notification, "callbackStatus": code}


def make_handler(stand_in: SmdpStandIn):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet; the state endpoint tells what happened
            pass

        def _json(self, code: int, body: dict | None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Admin-Protocol", "gsma/rsp/v2.2.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            try:
                return json.loads(raw or b"{}")
            except ValueError:
                return {}

        def do_GET(self):
            if self.path == "/admin/state":
                with stand_in.lock:
                    return self._json(
                        200,
                        {
                            "profiles": list(stand_in.profiles.values()),
                            "calls": stand_in.calls,
                            "notifications": stand_in.notifications,
                            "failure": stand_in.failure,
                        },
                    )
            return self._json(404, {"error": "not found"})

        def do_POST(self):
            body = self._body()
            if self.path.startswith(ES2):
                function = self.path[len(ES2) :]
                if function not in ("downloadOrder", "confirmOrder", "cancelOrder", "releaseProfile"):
                    return self._json(404, {"error": "unknown function"})
                code, out = stand_in.handle(function, body)
                return self._json(code, out)
            if self.path == "/admin/reset":
                stand_in.reset()
                return self._json(200, {"ok": True})
            if self.path == "/admin/failure":
                with stand_in.lock:
                    stand_in.failure = body or {"mode": "ok"}
                return self._json(200, {"ok": True})
            if self.path == "/admin/pool":
                with stand_in.lock:
                    for iccid in body.get("iccids", []):
                        stand_in.profiles.setdefault(
                            iccid,
                            {
                                "iccid": iccid,
                                "profileType": body.get("profileType", "default"),
                                "state": "available",
                                "imported": True,
                            },
                        )
                return self._json(200, {"ok": True})
            if self.path == "/admin/callback":
                stand_in.callback_url = body.get("callbackUrl", "")
                stand_in.callback_secret = body.get("callbackSecret", "")
                return self._json(200, {"ok": True})
            parts = self.path.strip("/").split("/")
            if len(parts) == 4 and parts[:2] == ["test", "device"]:
                code, out = stand_in.play_device(parts[2], parts[3], body)
                return self._json(code, out)
            return self._json(404, {"error": "not found"})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8430)
    parser.add_argument("--callback-url", default="")
    parser.add_argument("--callback-secret", default="")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca", help="require a client certificate signed by this CA (mutual TLS)")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the stand-in listens on loopback only")
    stand_in = SmdpStandIn(callback_url=args.callback_url, callback_secret=args.callback_secret)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(stand_in))
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.client_ca)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"smdp stand-in on {'https' if args.tls_cert else 'http'}://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
