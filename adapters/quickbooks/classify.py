"""ONE classification of every QBO outcome (HTTP status + QBO code + transport failure).

QBO.md's table, in code. Everything the client sees is first reduced to a ``Failure`` (what
happened on the wire) and then ``classify`` turns it into a ``Verdict``: the engine's outcome
(synced / transient / uncertain / action_required + reason code) plus what the gateway should do
next inside the same call (refresh the token once, retry after a pause, look up by DocNumber).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, replace
from http import HTTPStatus
from uuid import UUID

from adapters.redaction import redact_text
from domain.ports import OutcomeKind, PushOutcome, ReasonCode

THROTTLE_PAUSE_QBO_SECONDS = 60.0
INVALID_CLIENT_MESSAGE = (
    "QuickBooks rejected this app's client id or client secret (invalid_client): check "
    "FLIGHTLEDGER_QBO_CLIENT_ID and FLIGHTLEDGER_QBO_CLIENT_SECRET against the app's keys in "
    "the Intuit developer portal, then press Test connection"
)

# transport failures
REFUSED = "refused"  # connection refused / DNS: the request never left
CONNECT_TIMEOUT = "connect_timeout"  # no connection within the timeout: never sent
READ_TIMEOUT = "read_timeout"  # sent, no answer in time: QBO may have performed it
RESET = "reset"  # connection reset after sending: QBO may have performed it

_NOT_SENT = frozenset({REFUSED, CONNECT_TIMEOUT})
_XML_CODE = re.compile(r"errorCode=0*(\d+)|<(?:\w+:)?Error[^>]*code=\"(\d+)\"", re.I)
_XML_ELEMENT = re.compile(r"<(?:\w+:)?Error\b[^>]*\belement=\"([^\"]*)\"", re.I)
_HTML_TITLE = re.compile(r"<title>(.*?)</title>", re.I | re.S)
_GATEWAY_CODE = re.compile(r"errorCode=0*(\d+)")


@dataclass(frozen=True)
class Failure:
    """What went wrong on the wire, before any interpretation."""

    http_status: int | None = None
    code: str = ""  # QBO's code ("6000"), "invalid_grant", or "" when none
    message: str = ""
    detail: str = ""
    element: str = ""
    transport: str | None = None  # REFUSED, CONNECT_TIMEOUT, READ_TIMEOUT, RESET
    body_kind: str = "json"  # json | gateway | xml | html | text | oauth | none


@dataclass(frozen=True)
class Verdict:
    """The outcome plus what to do next within the same call."""

    outcome: PushOutcome
    refresh: bool = False  # refresh the access token once, then retry
    retry_now: bool = False  # surely not performed: safe to retry inside this call
    lookup: bool = False  # duplicate DocNumber: look the invoice up and compare


def parse_fault(http_status: int | None, body: str) -> Failure:
    """Read QBO's body in any of its shapes (application, gateway, XML, HTML, OAuth error)."""
    text = (body or "").strip()
    if not text:
        return Failure(http_status=http_status, body_kind="none")
    if text.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return _parse_json(http_status, data)
    if text.startswith("<"):
        lowered = text[:2000].lower()
        if "<html" in lowered or "<!doctype html" in lowered:
            title = _HTML_TITLE.search(text)
            message = " ".join(title.group(1).split()) if title else ""
            return Failure(http_status=http_status, message=message, body_kind="html")
        match = _XML_CODE.search(text)
        code = next((g for g in match.groups() if g), "") if match else ""
        message = _xml_text(text, "Message") or _xml_text(text, "message")
        return Failure(
            http_status=http_status,
            code=code or ("3001" if http_status == HTTPStatus.TOO_MANY_REQUESTS else ""),
            message=message or text[:200],
            detail=_xml_text(text, "Detail"),
            element=_xml_element(text),
            body_kind="xml",
        )
    return Failure(http_status=http_status, message=text[:300], body_kind="text")


def _xml_element(text: str) -> str:
    """The ``element`` attribute of the first ``<Error>`` (XML faults name it there)."""
    found = _XML_ELEMENT.search(text)
    return html.unescape(found.group(1)).strip() if found else ""


def _xml_text(text: str, tag: str) -> str:
    found = re.search(rf"<(?:\w+:)?{tag}>(.*?)</(?:\w+:)?{tag}>", text, re.S)
    return found.group(1).strip() if found else ""


def _parse_json(http_status: int | None, data: dict[str, object]) -> Failure:
    fault = data.get("Fault")
    if isinstance(fault, dict):
        errors = fault.get("Error") or []
        first = errors[0] if isinstance(errors, list) and errors else {}
        first = first if isinstance(first, dict) else {}
        return Failure(
            http_status=http_status,
            code=str(first.get("code") or ""),
            message=str(first.get("Message") or ""),
            detail=str(first.get("Detail") or ""),
            element=str(first.get("element") or ""),
        )
    fault = data.get("fault")
    if isinstance(fault, dict):
        errors = fault.get("error") or []
        first = errors[0] if isinstance(errors, list) and errors else {}
        first = first if isinstance(first, dict) else {}
        message = str(first.get("message") or "")
        code = str(first.get("code") or "")
        if not code:
            match = _GATEWAY_CODE.search(message)
            code = match.group(1) if match else ""
        return Failure(
            http_status=http_status,
            code=code.lstrip("0") or code,
            message=message,
            detail=str(first.get("detail") or ""),
            element=str(first.get("element") or ""),
            body_kind="gateway",
        )
    if "error" in data:  # OAuth: {"error": "invalid_grant", "error_description": ...}
        return Failure(
            http_status=http_status,
            code=str(data.get("error") or ""),
            message=str(data.get("error_description") or data.get("error") or ""),
            body_kind="oauth",
        )
    return Failure(http_status=http_status, message="", body_kind="json")


def parse_fault_object(http_status: int | None, data: dict[str, object]) -> Failure:
    """A fault already decoded from JSON (a batch item's ``{"Fault": ...}``), read as a body."""
    return _parse_json(http_status, data)


def is_throttled(failure: Failure) -> bool:
    """A 429 / ThrottleExceeded (3001): the realm must pause."""
    return failure.http_status == HTTPStatus.TOO_MANY_REQUESTS or failure.code.lstrip("0") == "3001"


def describe(failure: Failure) -> str:
    """QBO's own words plus code and status, for the operator (secrets scrubbed)."""
    if failure.transport is not None:
        words = {
            REFUSED: "QuickBooks could not be reached (connection refused)",
            CONNECT_TIMEOUT: "QuickBooks could not be reached (connection timed out)",
            READ_TIMEOUT: "QuickBooks did not answer in time",
            RESET: "The connection to QuickBooks was reset",
        }
        return words.get(failure.transport, "The connection to QuickBooks failed")
    parts = [p for p in (failure.message, failure.detail) if p]
    if not parts:
        parts = [_status_words(failure.http_status)]
    elif failure.body_kind == "html":
        parts = [f"{_status_words(failure.http_status)}: {parts[0]}"]
    tags = []
    if failure.code:
        tags.append(f"code {failure.code}")
    if failure.http_status:
        tags.append(f"HTTP {failure.http_status}")
    text = " — ".join(parts) + (f" ({', '.join(tags)})" if tags else "")
    return redact_text(text)


def _status_words(status: int | None) -> str:
    if status is None:
        return "QuickBooks gave no answer"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unexpected answer"
    return f"QuickBooks answered {phrase}"


def classify(
    failure: Failure, *, event_id: UUID, is_create: bool, minute_seconds: float = 60.0
) -> Verdict:
    """Turn one failure into the engine's outcome, per QBO.md's table."""
    message = describe(failure)
    base = PushOutcome(
        event_id=event_id,
        kind=OutcomeKind.TRANSIENT,
        code=failure.code or None,
        message=message,
        http_status=failure.http_status,
    )

    def action(reason: ReasonCode, **kw: object) -> PushOutcome:
        return replace(base, kind=OutcomeKind.ACTION_REQUIRED, reason_code=reason, **kw)  # type: ignore[arg-type]

    maybe_received = replace(
        base, kind=OutcomeKind.UNCERTAIN if is_create else OutcomeKind.TRANSIENT
    )
    if failure.transport is not None:
        if failure.transport in _NOT_SENT:
            return Verdict(base, retry_now=True)
        return Verdict(maybe_received)
    code, status = failure.code, failure.http_status
    if code == "invalid_grant":
        return Verdict(action(ReasonCode.AUTH_EXPIRED))
    if is_throttled(failure):  # pause the realm: no attempt spent, nothing else is sent
        pause = THROTTLE_PAUSE_QBO_SECONDS * minute_seconds / 60.0
        outcome = replace(base, code=code or "3001", retry_after=pause, pause_realm=True)
        return Verdict(outcome, retry_now=True)
    if code == "invalid_client":
        return Verdict(action(ReasonCode.AUTH_FAILED, message=INVALID_CLIENT_MESSAGE))
    if code == "3200" or (status == HTTPStatus.UNAUTHORIZED and code != "3100"):
        # 401 code 100 ("General Authentication Error", often as XML) is also what QBO says for
        # an expired access token: one refresh and a retry; a second 401 is auth_failed
        return Verdict(action(ReasonCode.AUTH_FAILED), refresh=True)
    if code == "100":
        return Verdict(action(ReasonCode.AUTH_FAILED))
    if code == "3100":
        if status is not None and status >= 500:
            return Verdict(base)
        return Verdict(action(ReasonCode.AUTH_FAILED))
    if status == HTTPStatus.FORBIDDEN:
        return Verdict(action(ReasonCode.AUTH_FAILED))
    if code == "2500":
        return Verdict(action(ReasonCode.INVALID_REFERENCE, missing=_element(failure)))
    if code == "610":
        return Verdict(action(ReasonCode.INACTIVE_MAPPING, missing=_element(failure)))
    if code in ("6140", "6210"):
        return Verdict(action(ReasonCode.DUPLICATE_DOC_NUMBER), lookup=True)
    if code == "6240":  # Duplicate Name Exists (a Customer create): look the name up
        return Verdict(action(ReasonCode.VALIDATION), lookup=True)
    if code == "5010":  # Stale Object Error: re-read and retry (updates only, QBO.md)
        return Verdict(replace(base, stale_object=True))
    if code == "6000":
        return Verdict(action(ReasonCode.VALIDATION, missing=_element(failure)))
    if code == "10000" or status is None or status >= 500:
        return Verdict(maybe_received)
    if failure.body_kind in ("html", "xml", "text", "none"):
        return Verdict(maybe_received)
    if status == HTTPStatus.OK and not code:
        return Verdict(replace(base, kind=OutcomeKind.SYNCED, message=""))
    # any other 4xx fault names a problem with what we sent: a person must look at it
    return Verdict(action(ReasonCode.VALIDATION, missing=_element(failure)))


def in_place_change(outcome: PushOutcome) -> PushOutcome:
    """An update's or a void's outcome: there a 610 (Object Not Found) says the invoice itself
    was deleted in QuickBooks since it was read, not that a mapping is inactive."""
    if outcome.code != "610":
        return outcome
    return replace(
        outcome, reason_code=ReasonCode.CHANGED_IN_QUICKBOOKS, missing=(), object_gone=True
    )


def _element(failure: Failure) -> tuple[str, ...]:
    return (failure.element,) if failure.element else ()
