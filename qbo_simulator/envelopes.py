"""Response bodies in QBO's shapes: application faults, gateway faults, throttle, HTML errors."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from xml.sax.saxutils import escape

JsonDict = dict[str, Any]

THROTTLE_MESSAGE = "message=ThrottleExceeded; errorCode=003001; statusCode=429"
AUTH_FAILED_MESSAGE = "message=AuthenticationFailed; errorCode=003200; statusCode=401"


@dataclass
class Response:
    """One HTTP answer; ``action`` = "reset" closes the socket with a TCP RST instead."""

    status: int
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    action: Literal["send", "reset"] = "send"

    def json(self) -> Any:
        """The body parsed as JSON (for tests and idempotent replay)."""
        return json.loads(self.body)


def now_iso() -> str:
    """QBO's `time` field: an ISO timestamp with milliseconds and offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status=status, body=body, headers=dict(headers or {}))


def error_item(code: str, message: str, detail: str, element: str = "") -> JsonDict:
    """One entry of an application Fault's Error list."""
    return {"Message": message, "Detail": detail, "code": code, "element": element}


def app_fault_payload(errors: list[JsonDict], fault_type: str = "ValidationFault") -> JsonDict:
    """The capitalised application envelope {"Fault": {...}, "time": ...}."""
    return {"Fault": {"Error": errors, "type": fault_type}, "time": now_iso()}


def app_fault(
    status: int,
    code: str,
    message: str,
    detail: str,
    *,
    element: str = "",
    fault_type: str = "ValidationFault",
) -> Response:
    """An application-fault response."""
    payload = app_fault_payload([error_item(code, message, detail, element)], fault_type)
    return json_response(status, payload)


def gateway_fault(
    status: int, code: str, message: str, detail: str, fault_type: str = "AUTHENTICATION"
) -> Response:
    """The lowercase gateway envelope (401/403 from Intuit's API gateway)."""
    payload: JsonDict = {
        "warnings": None,
        "intuitObject": None,
        "fault": {
            "error": [{"message": message, "detail": detail, "code": code, "element": None}],
            "type": fault_type,
        },
        "report": None,
        "queryResponse": [],
        "batchItemResponse": [],
        "attachableResponse": [],
        "syncErrorResponse": None,
        "requestId": None,
        "time": int(time.time() * 1000),
        "status": None,
        "cdcresponse": [],
    }
    return json_response(status, payload)


def token_expired() -> Response:
    """401 code 3200 in the gateway envelope (expired, unknown or malformed access token)."""
    return gateway_fault(401, "3200", AUTH_FAILED_MESSAGE, "Token expired: the token is invalid")


def throttle_json() -> Response:
    """429 code 3001 as an application fault."""
    return app_fault(
        429, "3001", THROTTLE_MESSAGE, "The request limit was reached.", fault_type="SERVICE"
    )


def throttle_xml() -> Response:
    """429 code 3001 as XML (QBO sometimes answers throttling in XML even to JSON clients)."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{now_iso()}">'
        '<Fault type="SERVICE"><Error code="3001">'
        f"<Message>{THROTTLE_MESSAGE}</Message>"
        "<Detail>The request limit was reached.</Detail>"
        "</Error></Fault></IntuitResponse>"
    )
    return Response(status=429, body=xml.encode(), content_type="application/xml")


def xml_fault(
    status: int, code: str, message: str, detail: str, fault_type: str, element: str = ""
) -> Response:
    """An application fault as XML (QBO's "General Authentication Error" comes this way; a
    validation fault names its ``element`` as an attribute of ``Error``)."""
    named = f' element="{escape(element)}"' if element else ""
    xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{now_iso()}">'
        f'<Fault type="{escape(fault_type)}"><Error code="{escape(code)}"{named}>'
        f"<Message>{escape(message)}</Message><Detail>{escape(detail)}</Detail>"
        "</Error></Fault></IntuitResponse>"
    )
    return Response(status=status, body=xml.encode(), content_type="application/xml")


_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def html_error(status: int) -> Response:
    """A load-balancer style HTML error page."""
    reason = _REASONS.get(status, "Error")
    html = (
        f"<html><head><title>{status} {reason}</title></head>"
        f"<body><center><h1>{status} {reason}</h1></center></body></html>"
    )
    return Response(status=status, body=html.encode(), content_type="text/html")


def oauth_error(status: int, error: str, description: str | None = None) -> Response:
    """An OAuth token-endpoint error body."""
    payload: JsonDict = {"error": error}
    if description is not None:
        payload["error_description"] = description
    return json_response(status, payload)
