"""The one module that talks to the SM-DP+: the operator side of GSMA SGP.22 ES2+ (DownloadOrder,
ConfirmOrder, CancelOrder, ReleaseProfile), JSON over HTTPS with mutual TLS in production
(docs/provisioning.md, "ES2+").

Every call carries the caller's functionCallIdentifier (derived from the order row, so a retry
is the same call, not a new order). An answer is one of: a result dict, `TransientError` (no
answer, a time-out, a 5xx: the call may or may not have happened; retry with the same
identifier), or `PermanentError` (the SM-DP+ said "Failed": its subject and reason codes)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings

logger = logging.getLogger(__name__)

PATH = "/gsma/rsp2/es2plus/"
SUCCESS = "Executed-Success"
# SGP.22 subject/reason codes we name (the rest are shown as received).
NO_PROFILE = ("8.2.5", "3.7")  # Profile Type - Unavailable: no more profile of this type
ICCID_UNAVAILABLE = ("8.2.1", "3.7")  # Profile ICCID - Unavailable


@dataclass
class Es2Error(Exception):
    function: str
    message: str
    subject_code: str = ""
    reason_code: str = ""
    http_status: int | None = None
    response: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        codes = f" {self.subject_code}/{self.reason_code}" if self.subject_code else ""
        return f"{self.function}{codes}: {self.message}"


class TransientError(Es2Error):
    """No usable answer: the call may have happened. Retry later with the same identifier."""


class PermanentError(Es2Error):
    """The SM-DP+ refused ("Failed"): retrying the same call would get the same answer."""

    @property
    def no_profile(self) -> bool:
        return (self.subject_code, self.reason_code) in (NO_PROFILE, ICCID_UNAVAILABLE)


@dataclass
class Exchange:
    """What was sent and what came back, for the order's call history."""

    function: str
    function_call_id: str
    request: dict[str, Any]
    http_status: int | None = None
    response: dict[str, Any] = field(default_factory=dict)


def _session_options() -> dict[str, Any]:
    options: dict[str, Any] = {"timeout": settings.SMDP_TIMEOUT_SECONDS}
    if settings.SMDP_CLIENT_CERT:
        options["cert"] = (settings.SMDP_CLIENT_CERT, settings.SMDP_CLIENT_KEY or None)
    if settings.SMDP_CA_BUNDLE:
        options["verify"] = settings.SMDP_CA_BUNDLE
    return options


def call(function: str, *, function_call_id: str, exchange: Exchange | None = None, **fields: Any) -> dict[str, Any]:
    """POST one ES2+ function and return the answer's fields (header removed). `exchange`, when
    given, is filled with what was sent and received, whatever happens."""
    body = {
        "header": {
            "functionRequesterIdentifier": settings.SMDP_REQUESTER_ID,
            "functionCallIdentifier": function_call_id,
        },
        **{k: v for k, v in fields.items() if v is not None and v != ""},
    }
    if exchange is not None:
        exchange.request = body
    url = settings.SMDP_URL.rstrip("/") + PATH + function
    try:
        response = requests.post(
            url,
            data=json.dumps(body),
            headers={"Content-Type": "application/json", "X-Admin-Protocol": "gsma/rsp/v2.2.0"},
            **_session_options(),
        )
    except requests.RequestException as exc:
        raise TransientError(function, f"no answer: {type(exc).__name__}") from exc
    if exchange is not None:
        exchange.http_status = response.status_code
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if exchange is not None:
        exchange.response = answer if isinstance(answer, dict) else {}
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise TransientError(function, f"HTTP {response.status_code}", http_status=response.status_code)
    if response.status_code >= 400 or not isinstance(answer, dict):
        # A refusal of the request itself (authentication, a path we got wrong): no retry fixes it.
        raise PermanentError(function, f"HTTP {response.status_code}", http_status=response.status_code)
    status = (answer.get("header") or {}).get("functionExecutionStatus") or {}
    if status.get("status") == SUCCESS:
        return {k: v for k, v in answer.items() if k != "header"}
    codes = status.get("statusCodeData") or {}
    raise PermanentError(
        function,
        str(codes.get("message") or status.get("status") or "Failed")[:300],
        subject_code=str(codes.get("subjectCode", "")),
        reason_code=str(codes.get("reasonCode", "")),
        http_status=response.status_code,
        response=answer,
    )


def download_order(
    *, function_call_id: str, iccid: str = "", eid: str = "", profile_type: str = "", exchange: Exchange | None = None
) -> str:
    """Reserve a profile: the given ICCID (from our pool) or one the SM-DP+ picks. Returns the ICCID."""
    answer = call(
        "downloadOrder",
        function_call_id=function_call_id,
        exchange=exchange,
        iccid=iccid,
        eid=eid,
        profileType=None if iccid else profile_type,
    )
    if not answer.get("iccid"):
        raise TransientError("downloadOrder", "answer without an ICCID", response=answer)
    return str(answer["iccid"])


@dataclass(frozen=True)
class Confirmed:
    matching_id: str
    smdp_address: str


def confirm_order(
    *, function_call_id: str, iccid: str, release: bool = True, eid: str = "", exchange: Exchange | None = None
) -> Confirmed:
    """Confirm the order (and release the profile for download with `release`): the activation
    code's matching ID and the SM-DP+ address."""
    answer = call(
        "confirmOrder",
        function_call_id=function_call_id,
        exchange=exchange,
        iccid=iccid,
        eid=eid,
        releaseFlag=release,
    )
    if not answer.get("matchingId"):
        raise TransientError("confirmOrder", "answer without a matchingId", response=answer)
    address = str(answer.get("smdpAddress") or settings.SMDP_URL.split("//")[-1].split(":")[0])
    return Confirmed(matching_id=str(answer["matchingId"]), smdp_address=address)


def release_profile(*, function_call_id: str, iccid: str, exchange: Exchange | None = None) -> None:
    call("releaseProfile", function_call_id=function_call_id, exchange=exchange, iccid=iccid)


def cancel_order(
    *, function_call_id: str, iccid: str, final_status: str = "Available", exchange: Exchange | None = None
) -> None:
    """Cancel a profile not yet downloaded; `final_status` "Available" puts it back in the pool,
    "Unavailable" retires it."""
    call(
        "cancelOrder",
        function_call_id=function_call_id,
        exchange=exchange,
        iccid=iccid,
        finalProfileStatusIndicator=final_status,
    )
