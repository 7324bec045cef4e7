"""The FinancialEvent aggregate: one flight ended, invoice requested or payment received."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate

from domain.ports import ReasonCode


class Status(StrEnum):
    """Where a financial event stands (DESIGN.md "Statuses")."""

    PENDING = "pending"
    SYNCING = "syncing"
    SYNCED = "synced"
    RETRYING = "retrying"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    ACTION_REQUIRED = "action_required"
    DISMISSED = "dismissed"


class FailureCategory(StrEnum):
    """How a failed push is treated."""

    TRANSIENT = "transient"  # will be retried automatically
    EXHAUSTED = "exhausted"  # transient failures outlasted the retries: waits for Retry Failed
    UNCERTAIN = "uncertain"  # may have reached QBO


RETRYABLE_BY_OPERATOR = frozenset({Status.FAILED, Status.ACTION_REQUIRED, Status.UNCERTAIN})
FINAL = frozenset({Status.SYNCED, Status.DISMISSED})


class TransitionRefused(ValueError):
    """A command does not apply in the event's current status."""


class FinancialEvent(Aggregate):
    """The life of one financial fact, from recorded to synced (or dismissed)."""

    class Recorded(Aggregate.Created):
        """Base of the three creation events: the validated record and who recorded it."""

        school: str
        kind: str
        reference: str
        student_id: str
        student_name: str
        amount: Decimal
        currency: str
        data: dict[str, Any]
        actor: str

        def apply(self, aggregate: Any) -> None:
            """Initial state."""
            agg: FinancialEvent = aggregate
            agg.school = self.school
            agg.kind = self.kind
            agg.reference = self.reference
            agg.student_id = self.student_id
            agg.student_name = self.student_name
            agg.amount = self.amount
            agg.currency = self.currency
            agg.data = self.data
            agg.status = Status.PENDING
            agg.reason_code = None
            agg.reason = ""
            agg.missing = []
            agg.attempts = 0
            agg.qbo_id = None
            agg.doc_number = None
            agg.request_id = None

    class FlightEnded(Recorded):
        """A flight ended."""

    class InvoiceRequested(Recorded):
        """The office requested an invoice."""

    class PaymentReceived(Recorded):
        """A payment was received."""

    class PushStarted(Aggregate.Event):
        """A push began; the request id is recorded before the call."""

        attempt: int
        request_id: str
        doc_number: str
        batched: bool
        actor: str

        def apply(self, aggregate: Any) -> None:
            """Now syncing."""
            agg: FinancialEvent = aggregate
            agg.status = Status.SYNCING
            agg.attempts = self.attempt
            agg.request_id = self.request_id
            agg.doc_number = self.doc_number
            agg.batched = self.batched

    class Synced(Aggregate.Event):
        """QBO holds it."""

        qbo_id: str
        doc_number: str
        actor: str

        def apply(self, aggregate: Any) -> None:
            """Now synced."""
            agg: FinancialEvent = aggregate
            agg.status = Status.SYNCED
            agg.qbo_id = self.qbo_id
            agg.doc_number = self.doc_number
            agg.reason_code = None
            agg.reason = ""
            agg.missing = []

    class PushFailed(Aggregate.Event):
        """A push failed; category says whether it retries, waits, or may have landed."""

        category: str
        code: str
        message: str
        actor: str

        def apply(self, aggregate: Any) -> None:
            """Now retrying, failed or uncertain."""
            agg: FinancialEvent = aggregate
            agg.status = {
                FailureCategory.TRANSIENT: Status.RETRYING,
                FailureCategory.EXHAUSTED: Status.FAILED,
                FailureCategory.UNCERTAIN: Status.UNCERTAIN,
            }[FailureCategory(self.category)]
            agg.reason_code = None
            agg.reason = self.message
            agg.missing = []

    class ActionRequired(Aggregate.Event):
        """It cannot succeed until a person acts."""

        reason_code: str
        message: str
        missing: list[str]
        actor: str

        def apply(self, aggregate: Any) -> None:
            """Now action_required."""
            agg: FinancialEvent = aggregate
            agg.status = Status.ACTION_REQUIRED
            agg.reason_code = ReasonCode(self.reason_code)
            agg.reason = self.message
            agg.missing = list(self.missing)

    class RetryRequested(Aggregate.Event):
        """An operator requeued it."""

        operator: str
        scope: str

        def apply(self, aggregate: Any) -> None:
            """Back to pending."""
            agg: FinancialEvent = aggregate
            agg.status = Status.PENDING
            agg.reason_code = None
            agg.reason = ""
            agg.missing = []

    class Dismissed(Aggregate.Event):
        """An operator decided it will not be sent."""

        operator: str
        note: str

        def apply(self, aggregate: Any) -> None:
            """Now dismissed."""
            agg: FinancialEvent = aggregate
            agg.status = Status.DISMISSED
            agg.reason = self.note

    # state (set by apply)
    school: str
    kind: str
    reference: str
    student_id: str
    student_name: str
    amount: Decimal
    currency: str
    data: dict[str, Any]
    status: Status
    reason_code: ReasonCode | None
    reason: str
    missing: list[str]
    attempts: int
    qbo_id: str | None
    doc_number: str | None
    request_id: str | None
    batched: bool = False

    def __init__(self) -> None:
        """State is set by the creation event's apply()."""

    # --- commands -----------------------------------------------------------------------------

    def start_push(
        self, *, request_id: str, doc_number: str, batched: bool, actor: str, at: datetime
    ) -> None:
        """Record a push attempt before the call."""
        if self.status in FINAL:
            raise TransitionRefused(f"{self.reference} is {self.status}: nothing to push")
        self.trigger_event(
            self.PushStarted,
            attempt=self.attempts + 1,
            request_id=request_id,
            doc_number=doc_number,
            batched=batched,
            actor=actor,
            timestamp=at,
        )

    def mark_synced(self, *, qbo_id: str, doc_number: str, actor: str, at: datetime) -> None:
        """Record that QBO holds it."""
        if self.status == Status.SYNCED:
            return
        self.trigger_event(
            self.Synced, qbo_id=qbo_id, doc_number=doc_number, actor=actor, timestamp=at
        )

    def mark_failed(
        self, *, category: FailureCategory, code: str, message: str, actor: str, at: datetime
    ) -> None:
        """Record a failed push."""
        self.trigger_event(
            self.PushFailed,
            category=category.value,
            code=code,
            message=message,
            actor=actor,
            timestamp=at,
        )

    def require_action(
        self,
        *,
        reason_code: ReasonCode,
        message: str,
        missing: list[str],
        actor: str,
        at: datetime,
    ) -> None:
        """Record that a person must act; unchanged reasons are not repeated."""
        if self.status in FINAL:
            raise TransitionRefused(f"{self.reference} is {self.status}")
        if (
            self.status == Status.ACTION_REQUIRED
            and self.reason_code == reason_code
            and self.reason == message
            and self.missing == list(missing)
        ):
            return
        self.trigger_event(
            self.ActionRequired,
            reason_code=reason_code.value,
            message=message,
            missing=list(missing),
            actor=actor,
            timestamp=at,
        )

    def request_retry(self, *, operator: str, scope: str, at: datetime) -> bool:
        """Requeue when it waits for an operator; False (nothing appended) otherwise."""
        if self.status not in RETRYABLE_BY_OPERATOR:
            return False
        self.trigger_event(self.RetryRequested, operator=operator, scope=scope, timestamp=at)
        return True

    def dismiss(self, *, operator: str, note: str, at: datetime) -> None:
        """Stop it from being sent."""
        if self.status == Status.SYNCED:
            raise TransitionRefused(f"{self.reference} is already in QuickBooks; cannot dismiss")
        if self.status == Status.SYNCING:
            raise TransitionRefused(f"{self.reference} is being sent right now; try again shortly")
        if self.status == Status.DISMISSED:
            return
        self.trigger_event(self.Dismissed, operator=operator, note=note, timestamp=at)
