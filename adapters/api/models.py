"""Request and response models of the API (pydantic), with the examples /docs shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    """One bad field and why."""

    field: str
    reason: str


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str
    message: str
    fields: list[FieldError]


class ErrorOut(BaseModel):
    """Every error answer."""

    error: ErrorBody
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid",
                        "message": "hobbs.end: must be >= hobbs.start (1234.5)",
                        "fields": [{"field": "hobbs.end", "reason": "must be >= hobbs.start"}],
                    }
                }
            ]
        }
    )


class RecordedOut(BaseModel):
    """One record's outcome."""

    id: str = Field(description="The financial event's id")
    reference: str = Field(description="The flight, request or payment id")
    status: str
    duplicate: bool
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "4f0c2d0e-8e8a-5d0b-9b7f-2b1c6a0f3e11",
                    "reference": "F-1001",
                    "status": "pending",
                    "duplicate": False,
                }
            ]
        }
    )


class RejectedOut(BaseModel):
    """A record of a batch that was refused (nothing of it appended)."""

    index: int
    field: str
    reason: str


class BatchOut(BaseModel):
    """How a batch went."""

    recorded: int
    duplicates: int
    rejected: list[RejectedOut]


class EventOut(BaseModel):
    """One row of the financial-event view (CLI.md `events`)."""

    id: str
    kind: str
    reference: str
    status: str
    reason_code: str | None
    reason: str
    attempts: int
    qbo_id: str | None
    doc_number: str | None
    amount: str
    updated_at: datetime
    missing: list[str] = []
    student_id: str | None = None
    applies_to: str | None = None
    qbo_amount: str | None = Field(
        default=None, description="What QuickBooks holds, net of the corrections applied"
    )
    corrections_pending: list[str] = Field(
        default=[], description='Corrections not yet in QuickBooks: "amendment", "cancellation"'
    )


class EventsPage(BaseModel):
    """A page of the view, newest first; pass next_cursor back for the next page."""

    items: list[EventOut]
    next_cursor: str | None


class HistoryOut(BaseModel):
    """One event of a financial event's history."""

    position: int
    log_position: int | None
    at: datetime
    type: str
    actor: str
    data: dict[str, Any]


class GroupOut(BaseModel):
    """An Action Required group."""

    reason_code: str
    count: int
    example: str
    fix: str


class RetryIn(BaseModel):
    """Which events to retry: a reason group, ids, or (neither) everything waiting."""

    reason: str | None = Field(
        default=None, description="A reason code, or 'failed' (failed + uncertain), 'uncertain'"
    )
    ids: list[str] | None = Field(default=None, description="Event, flight, request or payment ids")
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "missing_mapping"}]}
    )


class BlockedOut(BaseModel):
    """Events not requeued because their cause is not fixed."""

    reason_code: str
    why: str
    count: int


class RetryOut(BaseModel):
    """What Retry Failed did."""

    requeued: int
    skipped: int
    blocked: list[BlockedOut]


class DismissIn(BaseModel):
    """Why the event will not be sent."""

    note: str = Field(min_length=1, max_length=1000)
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "duplicate booking"}]}
    )


class OkOut(BaseModel):
    """Done."""

    ok: bool


class ConnectionOut(BaseModel):
    """The pill and the badge (CLI.md `connection status`)."""

    pill: str
    tone: str
    badge: str | None
    company: str | None
    country: str | None
    realm: str | None
    days_left: int | None
    expires_at: datetime | None
    last_error: str | None
    model_config = ConfigDict(extra="allow")


class ConnectionTestOut(BaseModel):
    """A live check (CLI.md `connection test`)."""

    ok: bool
    company: str | None
    country: str | None
    message: str


class MappingOut(BaseModel):
    """One mapping (CLI.md `mappings list`)."""

    kind: str
    key: str
    qbo_id: str
    active: bool


class MappingIn(BaseModel):
    """Map a key to a QuickBooks id."""

    qbo_id: str = Field(description="The QuickBooks Item, Customer or Account id")
    active: bool = True
    payment_method_id: str | None = Field(
        default=None, description="payment_type only: the QuickBooks PaymentMethod id"
    )
    allow_inactive: bool = Field(
        default=False, description="Accept an id that is inactive in QuickBooks"
    )
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"qbo_id": "3"}]})


class DefaultsIn(BaseModel):
    """Invoice defaults; those not given are kept."""

    term: str | None = None
    memo: str | None = None
    income_account: str | None = None
    allow_inactive: bool = False
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"term": "3", "memo": "Thank you for flying with us"}]},
    )


class ChecklistOut(BaseModel):
    """One setup checklist line."""

    item: str
    ok: bool
    fix: str
    detail: str = ""


class AliveOut(BaseModel):
    """Alive."""

    ok: bool


class HealthOut(BaseModel):
    """Ready: the database answers and the view is caught up (lag = events behind)."""

    ok: bool
    lag: int | None = None


class WebhookIn(BaseModel):
    """Subscribe a receiver."""

    url: str = Field(description="https, or http on loopback for development")
    events: list[str] = Field(
        min_length=1,
        description="financial_event.action_required, financial_event.synced, "
        "financial_event.failed, connection.reconnect_needed",
    )
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://ops.example.com/hooks/flightledger",
                    "events": ["financial_event.action_required"],
                }
            ]
        },
    )


class WebhookCreatedOut(BaseModel):
    """The subscription; the secret is shown this once."""

    id: str
    url: str
    events: list[str]
    secret: str


class WebhookOut(BaseModel):
    """A subscription (never its secret)."""

    id: str
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class AttemptOut(BaseModel):
    """One delivery attempt."""

    at: datetime
    status_code: int | None
    outcome: str
    detail: str


class DeliveryOut(BaseModel):
    """One message to the subscription and every attempt at it."""

    id: str
    type: str
    state: str
    created_at: datetime
    next_at: datetime
    payload: str
    attempts: list[AttemptOut]
