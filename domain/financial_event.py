"""The FinancialEvent aggregate: one flight ended, invoice requested or payment received."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
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
    CANCELLED = "cancelled"


class FailureCategory(StrEnum):
    """How a failed push is treated."""

    TRANSIENT = "transient"  # will be retried automatically
    EXHAUSTED = "exhausted"  # transient failures outlasted the retries: waits for Retry Failed
    UNCERTAIN = "uncertain"  # may have reached QBO


# The one table of what a failed push leaves an event in (the aggregate, the views and the
# worker's pass report all read it).
STATUS_AFTER_FAILURE: Mapping[FailureCategory, Status] = MappingProxyType(
    {
        FailureCategory.TRANSIENT: Status.RETRYING,
        FailureCategory.EXHAUSTED: Status.FAILED,
        FailureCategory.UNCERTAIN: Status.UNCERTAIN,
    }
)

RETRYABLE_BY_OPERATOR = frozenset({Status.FAILED, Status.ACTION_REQUIRED, Status.UNCERTAIN})
FINAL = frozenset({Status.SYNCED, Status.DISMISSED, Status.CANCELLED})


class CorrectionAction(StrEnum):
    """How a correction reaches QuickBooks (the history names it)."""

    UPDATE = "update"  # unpaid invoice edited in place (sparse update with its SyncToken)
    VOID = "void"  # unpaid invoice voided (flight cancelled)
    CREDIT_MEMO = "credit_memo"  # paid invoice: a CreditMemo for the reduction (-C1, -C2 ...)
    SUPPLEMENT = "supplement"  # paid invoice: a supplementary invoice for the increase (-A1 ...)
    NONE = "none"  # paid invoice, amount unchanged: nothing to send


_NOT_PROCESSED = frozenset(
    {ReasonCode.AUTH_EXPIRED, ReasonCode.AUTH_FAILED, ReasonCode.NOT_CONNECTED}
)


class TransitionRefused(ValueError):
    """A command does not apply in the event's current status."""


class NotFound(LookupError):
    """No financial event matches the reference."""


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
            agg.revision = 1
            agg.cancelled = False
            agg.maybe_landed = False
            agg.applied_key = None
            agg.qbo_amount = None
            agg.invoice_amount = None
            agg.voided = False
            agg.credits = 0
            agg.supplements = 0
            agg.correction = None
            agg.refunded = Decimal("0.00")

    class FlightEnded(Recorded):
        """A flight ended."""

    class InvoiceRequested(Recorded):
        """The office requested an invoice."""

    class PaymentReceived(Recorded):
        """A payment was received."""

    class PaymentRefunded(Recorded):
        """Money of a recorded payment was given back (its own aggregate, sent as a refund)."""

    class FlightAmended(Aggregate.Event):
        """The flight was corrected: these charges, hobbs and student from now on."""

        data: dict[str, Any]
        amount: Decimal
        student_id: str
        student_name: str
        currency: str
        reason: str
        actor: str

        def apply(self, aggregate: Any) -> None:
            """The new version; waits for the worker (a push, or a correction if sent)."""
            agg: FinancialEvent = aggregate
            agg.data = self.data
            agg.amount = self.amount
            agg.student_id = self.student_id
            agg.student_name = self.student_name
            agg.currency = self.currency
            agg.revision += 1
            agg.correction_reason = self.reason
            if agg.status != Status.DISMISSED:
                agg.status = Status.PENDING
                agg.reason_code = None
                agg.reason = ""
                agg.missing = []

    class FlightCancelled(Aggregate.Event):
        """The flight was cancelled after it was recorded."""

        reason: str
        actor: str

        def apply(self, aggregate: Any) -> None:
            """Never sent: cancelled. Sent: waits for the void or credit memo."""
            agg: FinancialEvent = aggregate
            agg.cancelled = True
            agg.correction_reason = self.reason
            agg.reason_code = None
            agg.missing = []
            if agg.qbo_id is None:
                agg.status = Status.CANCELLED
                agg.reason = self.reason
            else:
                agg.status = Status.PENDING
                agg.reason = ""

    class RefundRecorded(Aggregate.Event):
        """On a payment: part of it was refunded (keeps the refunds within its amount)."""

        refund_id: str
        amount: Decimal
        actor: str

        def apply(self, aggregate: Any) -> None:
            """Add to the refunded total."""
            agg: FinancialEvent = aggregate
            agg.refunded = agg.refunded + self.amount

    class CorrectionStarted(Aggregate.Event):
        """A correction of a sent invoice began; its request id is recorded before the call."""

        key: str  # the version it brings QuickBooks to: "v2", "v3" ... or "cancel"
        action: str  # CorrectionAction
        request_id: str
        doc_number: str  # the document's DocNumber (the invoice's own for update/void)
        amount: Decimal  # new invoice total (update), the difference (memo/supplement)
        attempt: int
        actor: str

        def apply(self, aggregate: Any) -> None:
            """Now syncing the correction."""
            agg: FinancialEvent = aggregate
            agg.status = Status.SYNCING
            agg.attempts = self.attempt
            agg.maybe_landed = True
            agg.correction = {
                "key": self.key,
                "action": self.action,
                "request_id": self.request_id,
                "doc_number": self.doc_number,
                "amount": self.amount,
            }

    class CorrectionApplied(Aggregate.Event):
        """QuickBooks holds the correction: what was sent and what QuickBooks now holds."""

        key: str
        action: str
        qbo_id: str  # the document's id (the invoice's own for update/void)
        doc_number: str
        amount: Decimal
        qbo_amount: Decimal  # the flight's net amount in QuickBooks after this correction
        note: str
        actor: str

        def apply(self, aggregate: Any) -> None:
            """QuickBooks is in line with this version again."""
            agg: FinancialEvent = aggregate
            agg.status = Status.SYNCED
            agg.applied_key = self.key
            agg.qbo_amount = self.qbo_amount
            agg.correction = None
            agg.maybe_landed = False
            agg.reason_code = None
            agg.reason = self.note
            agg.missing = []
            action = CorrectionAction(self.action)
            if action == CorrectionAction.UPDATE:
                agg.invoice_amount = self.amount
            elif action == CorrectionAction.VOID:
                agg.voided = True
            elif action == CorrectionAction.CREDIT_MEMO:
                agg.credits += 1
            elif action == CorrectionAction.SUPPLEMENT:
                agg.supplements += 1

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
            agg.maybe_landed = True
            agg.refused = False

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
            agg.maybe_landed = False
            agg.applied_key = agg.target_key
            agg.qbo_amount = agg.amount
            agg.invoice_amount = agg.amount

    class PushFailed(Aggregate.Event):
        """A push failed; category says whether it retries, waits, or may have landed."""

        category: str
        code: str
        message: str
        actor: str
        # one of the automatic attempts went (a throttle pauses the realm and spends none);
        # True for the events recorded before the field existed
        spends_attempt: bool = True

        def apply(self, aggregate: Any) -> None:
            """Now retrying, failed or uncertain."""
            agg: FinancialEvent = aggregate
            if self.spends_attempt:
                agg.failures += 1
            agg.status = STATUS_AFTER_FAILURE[FailureCategory(self.category)]
            if self.category == FailureCategory.TRANSIENT:
                agg.maybe_landed = False  # surely not applied
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
            if agg.status == Status.SYNCING:
                agg.maybe_landed = False  # QuickBooks refused the call just made
                # an auth failure never reached QBO's requestid store: the id stays usable
                agg.refused = self.reason_code not in _NOT_PROCESSED
            agg.status = Status.ACTION_REQUIRED
            agg.reason_code = ReasonCode(self.reason_code)
            agg.reason = self.message
            agg.missing = list(self.missing)

    class RetryRequested(Aggregate.Event):
        """An operator requeued it."""

        operator: str
        scope: str

        def apply(self, aggregate: Any) -> None:
            """Back to pending; after a definite refusal, a new requestid generation."""
            agg: FinancialEvent = aggregate
            if agg.refused:  # QBO would replay its refusal to the old requestid
                agg.generation += 1
                agg.refused = False
            agg.failures = 0  # the automatic attempts start again
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
    # requestid generation (domain.ids.request_id): bumped by a retry after a definite refusal
    generation: int = 0
    refused: bool = False  # the last push was answered with a refusal (ActionRequired)
    failures: int = 0  # failed pushes that spent an attempt since the last operator retry
    # corrections (set by apply; defaults for aggregates recorded before corrections existed)
    revision: int = 1  # 1 = as recorded; each amendment adds one (not the library's version)
    cancelled: bool = False
    maybe_landed: bool = False  # a push or correction may have reached QBO, outcome unknown
    applied_key: str | None = None  # the version QuickBooks holds ("v1", "v2", "cancel")
    qbo_amount: Decimal | None = None  # the flight's net amount in QuickBooks
    invoice_amount: Decimal | None = None  # the total of the QuickBooks invoice itself
    voided: bool = False
    credits: int = 0  # credit memos issued (DocNumber suffix -C1, -C2 ...)
    supplements: int = 0  # supplementary invoices issued (-A1, -A2 ...)
    correction: dict[str, Any] | None = None  # the correction in flight
    refunded: Decimal = Decimal("0.00")  # payments: total of the refunds recorded
    correction_reason: str = ""  # why the latest amendment or cancellation was recorded

    @property
    def target_key(self) -> str:
        """The version QuickBooks should hold: "v<version>", or "cancel"."""
        return "cancel" if self.cancelled else f"v{self.revision}"

    @property
    def correction_due(self) -> bool:
        """Sent, and QuickBooks does not hold the latest version yet."""
        return (
            self.qbo_id is not None
            and self.kind not in ("payment-received", "payment-refunded")
            and self.status != Status.DISMISSED
            and self.applied_key != self.target_key
        )

    @property
    def pending_corrections(self) -> list[str]:
        """What QuickBooks still has to learn ("v2", "cancel"), empty when in line."""
        return [self.target_key] if self.correction_due else []

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
        self,
        *,
        category: FailureCategory,
        code: str,
        message: str,
        actor: str,
        at: datetime,
        spends_attempt: bool = True,
    ) -> None:
        """Record a failed push (a throttled one spends no automatic attempt)."""
        self.trigger_event(
            self.PushFailed,
            category=category.value,
            code=code,
            message=message,
            actor=actor,
            spends_attempt=spends_attempt,
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

    # --- corrections --------------------------------------------------------------------------

    def _check_correctable(self, what: str) -> None:
        if self.cancelled:
            raise TransitionRefused(f"{self.reference} was cancelled; it cannot be {what}")
        if self.status == Status.SYNCING or (self.maybe_landed and self.status != Status.SYNCED):
            raise TransitionRefused(
                f"{self.reference} may be reaching QuickBooks right now (its last push is not "
                f"resolved yet); record it again once the flight shows synced"
            )

    def amend(
        self,
        *,
        data: dict[str, Any],
        amount: Decimal,
        student_id: str,
        student_name: str,
        currency: str,
        reason: str,
        actor: str,
        at: datetime,
    ) -> bool:
        """A new version of the flight; False (nothing appended) when nothing changes."""
        if data == self.data:
            return False
        self._check_correctable("amended")
        if currency != self.currency and self.qbo_id is not None:
            raise TransitionRefused(
                f"currency: {self.reference} is in QuickBooks in {self.currency}; "
                f"an amendment cannot change it to {currency}"
            )
        self.trigger_event(
            self.FlightAmended,
            data=data,
            amount=amount,
            student_id=student_id,
            student_name=student_name,
            currency=currency,
            reason=reason,
            actor=actor,
            timestamp=at,
        )
        return True

    def cancel(self, *, reason: str, actor: str, at: datetime) -> bool:
        """Cancel the flight; False (nothing appended) when it was cancelled before."""
        if self.cancelled:
            return False
        self._check_correctable("cancelled")
        self.trigger_event(self.FlightCancelled, reason=reason, actor=actor, timestamp=at)
        return True

    def note_refund(self, *, refund_id: str, amount: Decimal, actor: str, at: datetime) -> None:
        """A payment: record a refund of part of it, at most what is left unrefunded."""
        left = self.amount - self.refunded
        if amount > left:
            raise TransitionRefused(
                f"amount: refunds of payment {self.reference} would total "
                f"{self.refunded + amount}, more than the payment's {self.amount} "
                f"({left} left to refund)"
            )
        self.trigger_event(
            self.RefundRecorded, refund_id=refund_id, amount=amount, actor=actor, timestamp=at
        )

    def start_correction(
        self,
        *,
        action: CorrectionAction,
        request_id: str,
        doc_number: str,
        amount: Decimal,
        actor: str,
        at: datetime,
    ) -> None:
        """Record a correction attempt before the call."""
        if not self.correction_due:
            raise TransitionRefused(f"{self.reference}: QuickBooks already holds this version")
        self.trigger_event(
            self.CorrectionStarted,
            key=self.target_key,
            action=action.value,
            request_id=request_id,
            doc_number=doc_number,
            amount=amount,
            attempt=self.attempts + 1,
            actor=actor,
            timestamp=at,
        )

    def apply_correction(
        self,
        *,
        action: CorrectionAction,
        qbo_id: str,
        doc_number: str,
        amount: Decimal,
        qbo_amount: Decimal,
        note: str,
        actor: str,
        at: datetime,
    ) -> None:
        """Record that QuickBooks holds the correction."""
        self.trigger_event(
            self.CorrectionApplied,
            key=self.target_key,
            action=action.value,
            qbo_id=qbo_id,
            doc_number=doc_number,
            amount=amount,
            qbo_amount=qbo_amount,
            note=note,
            actor=actor,
            timestamp=at,
        )

    def dismiss(self, *, operator: str, note: str, at: datetime) -> None:
        """Stop it from being sent."""
        if self.status == Status.CANCELLED:
            raise TransitionRefused(f"{self.reference} was cancelled; nothing will be sent")
        if self.status == Status.SYNCED:
            raise TransitionRefused(f"{self.reference} is already in QuickBooks; cannot dismiss")
        if self.status == Status.SYNCING:
            raise TransitionRefused(f"{self.reference} is being sent right now; try again shortly")
        if self.status == Status.DISMISSED:
            return
        self.trigger_event(self.Dismissed, operator=operator, note=note, timestamp=at)
