"""Every row of QBO.md's error table, classified by the one function in classify.py."""

from __future__ import annotations

import json
import uuid

import pytest

from adapters.quickbooks.classify import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    REFUSED,
    RESET,
    Failure,
    classify,
    in_place_change,
    parse_fault,
)
from domain.ports import OutcomeKind, ReasonCode

EVENT = uuid.UUID(int=7)
T, U, A, S = OutcomeKind.TRANSIENT, OutcomeKind.UNCERTAIN, OutcomeKind.ACTION_REQUIRED, None


def app(status: int, code: str, message: str = "msg", detail: str = "det") -> Failure:
    body = {"Fault": {"Error": [{"Message": message, "Detail": detail, "code": code}]}}
    return parse_fault(status, json.dumps(body))


def gateway(status: int, code: str, message: str) -> Failure:
    body = {"fault": {"error": [{"message": message, "detail": "d", "code": code}]}}
    return parse_fault(status, json.dumps(body))


CASES = [
    # (name, failure, is_create, kind, reason, refresh, retry_now, lookup)
    ("3200 gateway", gateway(401, "3200", "message=AuthenticationFailed; errorCode=003200"),
     True, A, ReasonCode.AUTH_FAILED, True, False, False),
    ("401 empty body", parse_fault(401, ""), True, A, ReasonCode.AUTH_FAILED, True, False, False),
    ("100", app(401, "100"), True, A, ReasonCode.AUTH_FAILED, True, False, False),
    ("100 xml", parse_fault(401, "<?xml version='1.0'?><IntuitResponse><Fault "
     "type=\"AUTHENTICATION\"><Error code=\"100\"><Message>General Authentication Error"
     "</Message><Detail>AuthenticationErrorGeneral: SRV-110-Authentication Failure</Detail>"
     "</Error></Fault></IntuitResponse>"),
     True, A, ReasonCode.AUTH_FAILED, True, False, False),
    ("invalid_client", parse_fault(401, '{"error":"invalid_client"}'),
     False, A, ReasonCode.AUTH_FAILED, False, False, False),
    ("3100/403", gateway(403, "3100", "ApplicationAuthorizationFailed"),
     True, A, ReasonCode.AUTH_FAILED, False, False, False),
    ("3100/500", app(500, "3100"), True, T, None, False, False, False),
    ("3001/429", gateway(429, "", "message=ThrottleExceeded; errorCode=003001"),
     True, T, None, False, True, False),
    ("429 xml", parse_fault(429, "<?xml version='1.0'?><IntuitResponse><Fault><Error "
     "code=\"3001\"><Message>ThrottleExceeded</Message></Error></Fault></IntuitResponse>"),
     True, T, None, False, True, False),
    ("2500", app(400, "2500"), True, A, ReasonCode.INVALID_REFERENCE, False, False, False),
    ("610", app(400, "610"), True, A, ReasonCode.INACTIVE_MAPPING, False, False, False),
    ("6000", app(400, "6000"), True, A, ReasonCode.VALIDATION, False, False, False),
    ("6140", app(400, "6140"), True, A, ReasonCode.DUPLICATE_DOC_NUMBER, False, False, True),
    ("5010", app(400, "5010"), False, T, None, False, False, False),
    ("10000 create", app(500, "10000"), True, U, None, False, False, False),
    ("10000 read", app(500, "10000"), False, T, None, False, False, False),
    ("503 html create", parse_fault(503, "<html><title>Service Unavailable</title></html>"),
     True, U, None, False, False, False),
    ("502 html read", parse_fault(502, "<!DOCTYPE html><html></html>"),
     False, T, None, False, False, False),
    ("refused", Failure(transport=REFUSED), True, T, None, False, True, False),
    ("connect timeout", Failure(transport=CONNECT_TIMEOUT), True, T, None, False, True, False),
    ("read timeout create", Failure(transport=READ_TIMEOUT), True, U, None, False, False, False),
    ("reset create", Failure(transport=RESET), True, U, None, False, False, False),
    ("reset read", Failure(transport=RESET), False, T, None, False, False, False),
    ("invalid_grant", parse_fault(400, '{"error":"invalid_grant"}'),
     False, A, ReasonCode.AUTH_EXPIRED, False, False, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "failure", "is_create", "kind", "reason", "refresh", "retry_now", "lookup"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_classification_table(
    name: str,
    failure: Failure,
    is_create: bool,
    kind: OutcomeKind,
    reason: ReasonCode | None,
    refresh: bool,
    retry_now: bool,
    lookup: bool,
) -> None:
    """Each failure shape maps to QBO.md's engine outcome and next step."""
    verdict = classify(failure, event_id=EVENT, is_create=is_create)
    assert verdict.outcome.kind == kind
    assert verdict.outcome.reason_code == reason
    assert (verdict.refresh, verdict.retry_now, verdict.lookup) == (refresh, retry_now, lookup)
    assert verdict.outcome.message  # always a stated reason
    assert verdict.outcome.message.strip() not in {"400", "401", "429", "500", "503"}
    # classify alone says "pause the realm": the throttles, and nothing else
    assert verdict.outcome.pause_realm == name.startswith(("3001", "429"))
    # and "re-read, then send once more": the stale object only
    assert verdict.outcome.stale_object == (name == "5010")
    assert not verdict.outcome.object_gone  # only an update or a void can say that


def test_object_not_found_to_an_update_or_void_is_the_invoice_gone() -> None:
    """A 610 answering an update or a void is the invoice deleted in QuickBooks (a final
    changed_in_quickbooks outcome); any other outcome passes unchanged."""
    outcome = classify(app(400, "610"), event_id=EVENT, is_create=True).outcome
    gone = in_place_change(outcome)
    assert gone.object_gone and gone.kind == A
    assert gone.reason_code == ReasonCode.CHANGED_IN_QUICKBOOKS and gone.missing == ()
    assert gone.message == outcome.message  # QuickBooks' words kept
    stale = classify(app(400, "5010"), event_id=EVENT, is_create=True).outcome
    assert in_place_change(stale) == stale


def test_throttle_pause_is_scaled() -> None:
    """A 429 pauses the realm 60 QBO seconds on the configured time scale."""
    verdict = classify(app(429, "3001"), event_id=EVENT, is_create=True, minute_seconds=6)
    assert verdict.outcome.retry_after == pytest.approx(6.0)


def test_validation_message_carries_qbo_detail() -> None:
    """A 6000 outcome shows QBO's own message and Detail, plus the code."""
    verdict = classify(
        app(400, "6000", "A business validation error", "Amount is negative"),
        event_id=EVENT,
        is_create=True,
    )
    assert "Amount is negative" in verdict.outcome.message
    assert "code 6000" in verdict.outcome.message


def test_html_message_names_the_status_in_words() -> None:
    """An HTML 503 is described in words, not as a bare status code."""
    failure = parse_fault(503, "<html><head><title>503 Service Unavailable</title></head></html>")
    message = classify(failure, event_id=EVENT, is_create=False).outcome.message
    assert "Service Unavailable" in message and "QuickBooks" in message


def test_gateway_envelope_code_from_message() -> None:
    """A gateway fault without a code field takes it from 'errorCode=003001'."""
    failure = gateway(429, "", "message=ThrottleExceeded; errorCode=003001; statusCode=429")
    assert failure.code == "3001"
    assert failure.body_kind == "gateway"


def test_an_xml_validation_fault_keeps_its_element() -> None:
    """QBO's XML 2500 names the element as an attribute of Error: it reaches the verdict."""
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2026-11-20T08:00:00">'
        '<Fault type="ValidationFault"><Error code="2500" '
        'element="Line.SalesItemLineDetail.ItemRef"><Message>Invalid Reference Id</Message>'
        "<Detail>Invalid Reference Id : Item 999</Detail></Error></Fault></IntuitResponse>"
    )
    failure = parse_fault(400, body)
    assert (failure.code, failure.element, failure.body_kind) == (
        "2500",
        "Line.SalesItemLineDetail.ItemRef",
        "xml",
    )
    verdict = classify(failure, event_id=uuid.uuid4(), is_create=True)
    assert verdict.outcome.reason_code == ReasonCode.INVALID_REFERENCE
    assert verdict.outcome.missing == ("Line.SalesItemLineDetail.ItemRef",)
