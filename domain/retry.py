"""Retry Failed's rules: which events a selection means, and what still blocks them.

The use case (services/retry.py `retry_failed`, called by the CLI's `retry-failed`, the
dashboard's Retry Failed buttons and `POST /api/v1/retry-failed`) asks `select_for_retry` which
events a press means, and `FlightLedger.retry_failed` asks `blocked_by` why an event may not be
requeued yet. Both are pure: rows come through the `WaitingRows` port (the financial-event
view), events through the ledger.

Groups: a reason code (`missing_mapping`, ...) selects the waiting events with that reason
code; `failed` selects failed *and* uncertain events (what the dashboard counts and shows as
"Failed"); `uncertain` selects uncertain events only.

"Still blocked" checks are pluggable: each is a `BlockCheck` (event, context) -> (reason code,
why) or None, registered with `register_block_check`; the first that answers blocks the event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from domain.connection import Connection
from domain.financial_event import RETRYABLE_BY_OPERATOR, FinancialEvent, NotFound, Status
from domain.mappings import Mappings
from domain.ports import ReasonCode
from domain.preflight import Blocked, check_connection, check_mappings

FAILED_GROUP = "failed"  # failed + uncertain: the dashboard's "Failed" group
UNCERTAIN_GROUP = "uncertain"
STATUS_GROUPS: dict[str, tuple[Status, ...]] = {
    FAILED_GROUP: (Status.FAILED, Status.UNCERTAIN),
    UNCERTAIN_GROUP: (Status.UNCERTAIN,),
}
REASON_CODES: tuple[str, ...] = tuple(r.value for r in ReasonCode)
GROUPS: tuple[str, ...] = REASON_CODES + tuple(STATUS_GROUPS)
WAITING_FOR_OPERATOR: tuple[Status, ...] = (
    Status.FAILED,
    Status.ACTION_REQUIRED,
    Status.UNCERTAIN,
)

CONNECTION_REASONS = frozenset(
    {ReasonCode.AUTH_EXPIRED, ReasonCode.AUTH_FAILED, ReasonCode.NOT_CONNECTED}
)
MAPPING_REASONS = frozenset({ReasonCode.MISSING_MAPPING, ReasonCode.INACTIVE_MAPPING})


class SelectionError(ValueError):
    """The selection names a group or an event that does not exist."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field  # "reason" or "ids"


class UnknownEvent(SelectionError):
    """An id in the selection is not a financial event of the school."""


class _Row(Protocol):
    @property
    def id(self) -> UUID: ...
    @property
    def school(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def reason_code(self) -> str | None: ...


class WaitingRows(Protocol):
    """The part of the financial-event view selection reads."""

    def list(
        self,
        school: str,
        *,
        status: str | None = None,
        statuses: Sequence[str] = (),
        reason_code: str | None = None,
        limit: int | None = None,
    ) -> Sequence[Any]:
        """Rows of one school filtered by status(es) / reason."""
        ...


@dataclass
class RetryResult:
    """What Retry Failed did: requeued, skipped (nothing to do), blocked (cause not fixed)."""

    requeued: int = 0
    skipped: int = 0
    blocked: list[dict[str, str]] = field(default_factory=list)
    requeued_ids: list[UUID] = field(default_factory=list)


class RetryLedger(Protocol):
    """The part of the ledger (domain.application.FlightLedger) Retry Failed uses."""

    def financial_event(self, event_id: UUID) -> FinancialEvent:
        """One financial event by id."""
        ...

    def find(self, school: str, ref: str) -> FinancialEvent:
        """Resolve a reference within a school (NotFound otherwise)."""
        ...

    def iter_financial_events(self, school: str | None = None) -> Iterable[FinancialEvent]:
        """Every financial event of a school, from the log."""
        ...

    def retry_failed(
        self,
        school: str,
        events: Iterable[FinancialEvent],
        *,
        operator: str,
        scope: str,
        qbo_lists: Callable[[], Any] | None = None,
    ) -> RetryResult:
        """Requeue the events whose cause is fixed, in one transaction."""
        ...


@dataclass(frozen=True)
class Selection:
    """The events a Retry Failed press means, and its scope as recorded in the log."""

    events: list[FinancialEvent]
    scope: str


def check_group(reason: str | None) -> None:
    """SelectionError (field `reason`) unless reason is None or a known group."""
    if reason is not None and reason not in GROUPS:
        raise SelectionError(
            f"unknown reason {reason!r}; one of {', '.join(GROUPS)}", field="reason"
        )


def in_group(event: FinancialEvent, reason: str | None) -> bool:
    """Whether a waiting event belongs to the group (None: every waiting event)."""
    if event.status not in WAITING_FOR_OPERATOR:
        return False
    if reason is None:
        return True
    if reason in STATUS_GROUPS:
        return event.status in STATUS_GROUPS[reason]
    return event.reason_code == reason


def waiting_events(
    ledger: RetryLedger,
    rows: WaitingRows,
    school: str,
    statuses: Sequence[str],
) -> list[FinancialEvent]:
    """The school's events whose view row has one of the statuses, each loaded from the log
    (so its state is current even if the view lags) and kept only if it still has one."""
    listed = rows.list(school, statuses=[str(s) for s in statuses])
    events = [ledger.financial_event(row.id) for row in listed if row.school == school]
    return [e for e in events if e.status in statuses]


def select_for_retry(
    ledger: RetryLedger,
    school: str,
    *,
    reason: str | None = None,
    ids: Sequence[str] = (),
    rows: WaitingRows | None = None,
) -> Selection:
    """The events an operator chose: ids (each resolved within the school), a group, or every
    event waiting for an operator. Without `rows` the school's events are replayed from the log.
    """
    check_group(reason)
    if ids:
        events: list[FinancialEvent] = []
        for ref in ids:
            try:
                events.append(ledger.find(school, ref))
            except NotFound as exc:
                raise UnknownEvent(str(exc), field="ids") from None
        scope = "ids:" + ",".join(ids)
        if reason is not None:
            events = [e for e in events if in_group(e, reason)]
        return Selection(events, scope)
    if rows is not None:
        candidates: Iterable[FinancialEvent] = waiting_events(
            ledger, rows, school, WAITING_FOR_OPERATOR
        )
    else:
        candidates = (
            e for e in ledger.iter_financial_events(school) if e.status in RETRYABLE_BY_OPERATOR
        )
    return Selection(
        [e for e in candidates if in_group(e, reason)],
        f"reason:{reason}" if reason else "all",
    )


# --- what still blocks a retry ------------------------------------------------------------------


@dataclass(frozen=True)
class RetryContext:
    """What the checks may read: the school's connection and mappings at the time of the press."""

    school: str
    connection: Connection
    mappings: Mappings
    now: datetime
    connection_problem: Blocked | None
    extra: Mapping[str, Any] = field(default_factory=dict)


BlockCheck = Callable[[FinancialEvent, RetryContext], "tuple[str, str] | None"]
_BLOCK_CHECKS: list[BlockCheck] = []


def register_block_check(check: BlockCheck) -> BlockCheck:
    """Add a "still blocked" check (usable as a decorator); checks run in registration order."""
    if check not in _BLOCK_CHECKS:
        _BLOCK_CHECKS.append(check)
    return check


def block_checks() -> tuple[BlockCheck, ...]:
    """The registered checks, in order."""
    return tuple(_BLOCK_CHECKS)


def retry_context(
    school: str, connection: Connection, mappings: Mappings, now: datetime, **extra: Any
) -> RetryContext:
    """The context for one Retry Failed press."""
    return RetryContext(
        school=school,
        connection=connection,
        mappings=mappings,
        now=now,
        connection_problem=check_connection(connection, now),
        extra=extra,
    )


def blocked_by(event: FinancialEvent, context: RetryContext) -> tuple[str, str] | None:
    """(reason code, why) when the cause of the event's wait is not fixed yet, else None."""
    for check in _BLOCK_CHECKS:
        answer = check(event, context)
        if answer is not None:
            return answer
    return None


def _reason(event: FinancialEvent) -> ReasonCode | None:
    with contextlib.suppress(ValueError):
        return ReasonCode(event.reason_code) if event.reason_code else None
    return None


@register_block_check
def connection_not_fixed(event: FinancialEvent, context: RetryContext) -> tuple[str, str] | None:
    """A connection problem (or a reason-less failure while the connection is broken)."""
    problem = context.connection_problem
    if problem is None:
        return None
    reason = _reason(event)
    if reason in CONNECTION_REASONS or (event.reason_code is None):
        return problem.reason_code.value, _connection_why(problem.reason_code)
    return None


@register_block_check
def mapping_not_fixed(event: FinancialEvent, context: RetryContext) -> tuple[str, str] | None:
    """A missing or inactive mapping that is still missing or inactive."""
    if _reason(event) not in MAPPING_REASONS:
        return None
    auto_customers = bool(context.extra.get("auto_customers", False))
    problem = check_mappings(event, context.mappings, auto_customers=auto_customers)
    if problem is None:
        return None
    return problem.reason_code.value, f"still {problem.message[0].lower()}{problem.message[1:]}"


@register_block_check
def customer_not_chosen(event: FinancialEvent, context: RetryContext) -> tuple[str, str] | None:
    """ambiguous_customer waits until a person maps the student to one QuickBooks customer."""
    if (
        _reason(event) != ReasonCode.AMBIGUOUS_CUSTOMER
        or event.student_id in context.mappings.students
    ):
        return None
    student = event.student_id
    return (
        ReasonCode.AMBIGUOUS_CUSTOMER.value,
        f"student {student} is still not mapped to a QuickBooks customer: map it "
        f"(flightledger mappings set student {student} --customer ID) first",
    )


QBO_OBJECT_REASONS = frozenset({ReasonCode.INACTIVE_MAPPING, ReasonCode.INVALID_REFERENCE})


@register_block_check
def quickbooks_object_not_fixed(
    event: FinancialEvent, context: RetryContext
) -> tuple[str, str] | None:
    """inactive_mapping / invalid_reference: the event's mapped QuickBooks objects, looked up in
    the school's lists read again, are still inactive or gone (the mapping not pointed
    elsewhere, nor the object reactivated). Without lists (none given, or unreadable) the
    worker finds out."""
    from domain.mapping_check import keys_used, mapped_id, reference_sentence
    from domain.qbo_lists import QboLists

    reason = _reason(event)
    provider = context.extra.get("qbo_lists")
    if reason not in QBO_OBJECT_REASONS or provider is None:
        return None
    lists = provider()
    if not isinstance(lists, QboLists):
        return None
    for key in keys_used(event.student_id, event.data):
        qbo_id = mapped_id(context.mappings, key)
        if qbo_id is None:
            continue
        found = reference_sentence(key, lists, qbo_id)
        if found is not None:
            return reason.value if reason else "", f"{found[1]}: map another or reactivate it"
    return None


def _connection_why(code: ReasonCode) -> str:
    if code == ReasonCode.AUTH_EXPIRED:
        return "QuickBooks still needs to be reconnected (refresh token expired): Reconnect first"
    return "QuickBooks is still not connected: connect it first"
