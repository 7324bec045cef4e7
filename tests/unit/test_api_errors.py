"""adapters.api.errors.service_error: each use-case refusal's status, code, message and fields in
API.md's error envelope (the one place the API renders them)."""

from __future__ import annotations

import json

import pytest

from adapters.api.errors import ServiceError, api_response, service_error
from adapters.webhooks import UnsafeReceiver
from domain.financial_event import NotFound, TransitionRefused
from domain.mapping_input import InvalidMappingInput
from domain.qbo_lists import ReferenceProblem
from domain.records import RecordError, UnknownRecord
from domain.retry import SelectionError, UnknownEvent
from services.mappings import MappingRefused, NothingToSet, Reference, ReferenceRefused
from services.records import RecordedDifferently
from services.retry import NOTE_REQUIRED, NoteRequired

STUDENT_REASON = "a student mapping cannot be inactive"
MISSING_ITEM = ReferenceRefused(
    Reference("Item", "999", "qbo_id"), ReferenceProblem("Item", "999", "missing")
)
CASES: list[tuple[ServiceError, dict[str, str], int, str, str, list[tuple[str, str]]]] = [
    (
        RecordError("hours", "must be > 0"),
        {},
        422,
        "invalid",
        "hours: must be > 0",
        [("hours", "must be > 0")],
    ),
    (
        UnknownRecord("flight_id", "no flight F-9 was recorded"),
        {},
        404,
        "not_found",
        "flight_id: no flight F-9 was recorded",
        [("flight_id", "no flight F-9 was recorded")],
    ),
    (
        RecordedDifferently("flight F-1 was recorded with other contents", field="flight_id"),
        {},
        409,
        "conflict",
        "flight F-1 was recorded with other contents",
        [("flight_id", "already recorded, differently")],
    ),
    (
        UnknownEvent("no financial event 'x'", field="ids"),
        {},
        404,
        "not_found",
        "no financial event 'x'",
        [("ids", "no financial event 'x'")],
    ),
    (
        SelectionError("unknown reason code 'zzz'", field="reason"),
        {},
        422,
        "invalid",
        "reason: unknown reason code 'zzz'",
        [("reason", "unknown reason code 'zzz'")],
    ),
    (NoteRequired(), {}, 422, "invalid", f"note: {NOTE_REQUIRED}", [("note", NOTE_REQUIRED)]),
    (NotFound("F-1"), {"ref": "F-1"}, 404, "not_found", "no financial event 'F-1'", []),
    (TransitionRefused("already synced"), {}, 409, "conflict", "already synced", []),
    (
        MappingRefused("qbo_id", STUDENT_REASON),
        {},
        422,
        "invalid",
        f"qbo_id: {STUDENT_REASON}",
        [("qbo_id", STUDENT_REASON)],
    ),
    (
        MISSING_ITEM,
        {},
        422,
        "invalid",
        "qbo_id: QuickBooks item 999 does not exist",
        [("qbo_id", "QuickBooks item 999 does not exist")],
    ),
    (
        NothingToSet(),
        {},
        422,
        "invalid",
        "body: give at least one of term, memo, income_account",
        [("body", "give at least one of term, memo, income_account")],
    ),
    (
        InvalidMappingInput("key: must not be empty"),
        {"field": "key"},
        422,
        "invalid",
        "key: must not be empty",
        [("key", "must not be empty")],
    ),
    (
        UnsafeReceiver("url: must use https"),
        {"field": "url"},
        422,
        "invalid",
        "url: must use https",
        [("url", "must use https")],
    ),
]


@pytest.mark.parametrize(
    ("exc", "context", "status", "code", "message", "fields"),
    CASES,
    ids=[type(c[0]).__name__ for c in CASES],
)
def test_each_service_error_has_one_envelope(
    exc: ServiceError,
    context: dict[str, str],
    status: int,
    code: str,
    message: str,
    fields: list[tuple[str, str]],
) -> None:
    """Status, code, message and the fields naming what was refused, as API.md's envelope."""
    response = api_response(service_error(exc, **context))
    assert response.status_code == status
    assert json.loads(bytes(response.body)) == {
        "error": {
            "code": code,
            "message": message,
            "fields": [{"field": f, "reason": r} for f, r in fields],
        }
    }
