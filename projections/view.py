"""The financial-event view: its row type and the interface every storage implements."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification

VIEW_TRACKING_NAME = "flightledger"  # the tracking row is keyed by the upstream application
# statuses of events a worker still has to settle (Status values; the view is told no more)
UNSETTLED_STATUSES = ("pending", "retrying", "uncertain", "syncing")
# The stored views' layout. A view stored under an older one (or by code before the version was
# kept) is emptied when opened and projected again from the start of the log, never read as it
# is: 1 rows and mapping-key usage counters, 2 row counters per status/kind and reason, students.
VIEW_VERSION = 2


class TrackingConflict(IntegrityError):
    """Another projector moved the view since this batch was read: nothing was written."""


@dataclass(frozen=True)
class EventRow:
    """One financial event as operators see it."""

    id: UUID
    school: str
    kind: str
    reference: str
    student_id: str
    amount: Decimal
    status: str
    reason_code: str | None
    reason: str
    missing: tuple[str, ...]
    attempts: int
    qbo_id: str | None
    doc_number: str | None
    updated_at: datetime
    applies_to: str | None = None  # payments: the flight/request id they pay
    created_at: datetime | None = None
    position: int = 0  # log position of the creation event: rows list oldest first by it
    qbo_amount: Decimal | None = None  # the amount QuickBooks holds (net of corrections)
    corrections: str = ""  # a correction QuickBooks has still to learn: amendment/cancellation


# The row's fields, in order: the stored views' column order and the projection's raw rows
# (projections.financial_events.RAW_COLUMNS and its COL_* indexes) are this, named once here.
ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(EventRow))


@dataclass(frozen=True)
class ReasonGroup:
    """Action Required events grouped by reason code."""

    reason_code: str
    count: int
    example: str  # a reference of one event in the group
    missing: tuple[str, ...] = field(default=())  # union of missing keys in the group


def row_json(row: EventRow) -> dict[str, Any]:
    """One row as CLI.md's `events --json` fields (plus missing, student_id, applies_to)."""
    return {
        "id": row.id,
        "kind": row.kind,
        "reference": row.reference,
        "status": row.status,
        "reason_code": row.reason_code,
        "reason": row.reason,
        "attempts": row.attempts,
        "qbo_id": row.qbo_id,
        "doc_number": row.doc_number,
        "amount": row.amount,
        "updated_at": row.updated_at,
        "missing": list(row.missing),
        "student_id": row.student_id,
        "applies_to": row.applies_to,
        "qbo_amount": row.qbo_amount,
        "corrections_pending": [row.corrections] if row.corrections else [],
    }


@dataclass(frozen=True)
class EventQuery:
    """One page of the events tab: filters, and the keyset cursor (newest first).

    `search` matches a reference (flight / request / payment id) or a DocNumber exactly;
    `since`/`until` bound the creation time (until exclusive); `before` is the position of the
    last row of the previous page (rows strictly older follow).
    """

    statuses: tuple[str, ...] = ()
    reason_code: str | None = None
    student_id: str | None = None
    search: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    limit: int = 50


@dataclass(frozen=True)
class KeyUsage:
    """How many financial events use one mapping key ("charge:fuel", "student:S-7", ...)."""

    key: str
    unsent: int  # events not yet synced, dismissed or cancelled
    total: int  # every event using it, historical ones included
    examples: tuple[str, ...] = ()  # a few references of unsent events


class FinancialEventView(Protocol):
    """Read side of the view (both SQLite and PostgreSQL implement it)."""

    def get(self, event_id: UUID) -> EventRow | None:
        """One row by id."""
        ...

    def list(
        self,
        school: str,
        *,
        status: str | None = None,
        statuses: Sequence[str] = (),
        reason_code: str | None = None,
        limit: int | None = None,
    ) -> list[EventRow]:
        """Rows of one school, oldest first, filtered by status(es) / reason."""
        ...

    def newest_first(
        self,
        school: str,
        *,
        status: str | None = None,
        reason_code: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> builtins.list[EventRow]:
        """A page of rows, newest first, strictly before log position `before` (keyset)."""
        ...

    def page(self, school: str, query: EventQuery) -> builtins.list[EventRow]:
        """One page of rows, newest first, by keyset on the position (index-backed)."""
        ...

    def counts(self, school: str) -> dict[str, int]:
        """Number of rows per status."""
        ...

    def counts_by_kind(self, school: str) -> dict[tuple[str, str], int]:
        """Number of rows per (status, kind)."""
        ...

    def student_names(self, school: str, student_ids: Iterable[str]) -> dict[str, str]:
        """Display names of these students, as the log last gave them (unknown ids left out)."""
        ...

    def reason_groups(self, school: str) -> builtins.list[ReasonGroup]:
        """Action Required rows grouped by reason code."""
        ...

    def schools(self) -> builtins.list[str]:
        """Schools that have any row."""
        ...

    def schools_with_work(self) -> builtins.list[str]:
        """Schools that have a row in one of UNSETTLED_STATUSES (one query, index-backed)."""
        ...

    def max_tracking_id(self) -> int:
        """The last log position applied to the view (0 when empty)."""
        ...

    def reason_counts(self, school: str) -> dict[str, int]:
        """Number of Action Required rows per reason code."""
        ...

    def usage(self, school: str) -> builtins.list[KeyUsage]:
        """Mapping keys in use by the school's events, with counts and examples (by key)."""
        ...


class Listener(Protocol):
    """Wakes a follower when the log may have grown."""

    pid: int | None  # the listening database session (PostgreSQL), None when polling

    def wait(self, timeout: float) -> bool:
        """Block up to timeout seconds; True when new events may be there."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class ProjectedView(FinancialEventView, Protocol):
    """The write side a projector drives: batches, tracking, the audit chain."""

    def apply_batch(
        self,
        changes: Sequence[tuple[int, Any]],
        notifications: Sequence[Notification],
        *,
        previous: int,
        position: int,
    ) -> int:
        """Fold events into rows, chain notifications and move tracking, in one transaction.

        Raises TrackingConflict (nothing written) when tracking is not at `previous`.
        Returns the number of rows written.
        """
        ...

    def load(
        self,
        batches: Iterable[tuple[Sequence[tuple[int, Any]], Sequence[Notification]]],
        *,
        replace: bool,
    ) -> int:
        """Fill an empty view from the start of the log, in one transaction: `batches` are
        (changes, notifications) in log order; rows are written without keeping the counters
        or the secondary indexes up, then counted by GROUP BY and indexed once; audit chain
        and tracking (the last notification's position) as in apply_batch.

        `replace` empties the view first (a rebuild); without it the view must be at position
        0, else TrackingConflict and nothing is written. Returns the number of rows written.
        """
        ...

    def drop(self) -> None:
        """Delete every row and the tracking position (the audit chain is kept)."""
        ...

    def audit_links(self, start: int, limit: int) -> builtins.list[tuple[int, bytes]]:
        """Stored chain links from position `start`, ascending."""
        ...

    def append_audit_links(self, links: Sequence[tuple[int, bytes]]) -> None:
        """Store chain links (links already stored are left as they are)."""
        ...

    def listen(self, channel: str) -> Listener:
        """A listener on the log's notification channel (polling where there is none)."""
        ...

    def close(self) -> None:
        """Close the view's connections."""
        ...
