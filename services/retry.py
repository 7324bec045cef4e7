"""Retry Failed and Dismiss: the operator's actions on events that wait for a person.

`flightledger retry-failed` / `dismiss`, the dashboard's Retry Failed and Dismiss buttons and
`POST /api/v1/retry-failed` / `/events/{ref}/dismiss` call these. Which events a press means is
domain.retry's rule (`select_for_retry`), what still blocks an event too (`blocked_by`, asked by
`FlightLedger.retry_failed`); this module runs one press: select, read QuickBooks' lists again
(once, only when an event waits on a QuickBooks object), requeue in one transaction, answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from domain.financial_event import FinancialEvent
from domain.qbo_lists import ListsUnavailable, QboLists, QboListsPort
from domain.retry import RetryLedger, WaitingRows, select_for_retry

NOTE_REQUIRED = "say why the event will not be sent"


@dataclass(frozen=True)
class RetryOutcome:
    """What one Retry Failed press did (CLI.md / API.md: requeued, skipped, blocked, selected)."""

    selected: int
    requeued: int
    skipped: int
    blocked: list[dict[str, Any]] = field(default_factory=list)  # reason_code, why, count
    requeued_ids: list[UUID] = field(default_factory=list)

    @property
    def all_blocked(self) -> bool:
        """Nothing requeued or skipped, and something blocked: the press changed nothing."""
        return not self.requeued and not self.skipped and bool(self.blocked)

    def why_blocked(self) -> str:
        """'reason_code: why; ...' of every blocked group."""
        return "; ".join(f"{b['reason_code']}: {b['why']}" for b in self.blocked)

    def summary(self) -> dict[str, Any]:
        """The JSON answer: {"requeued", "skipped", "blocked": [...], "selected"}."""
        return {
            "requeued": self.requeued,
            "skipped": self.skipped,
            "blocked": [dict(b) for b in self.blocked],
            "selected": self.selected,
        }


def fresh_lists(lists: QboListsPort | None, school: str) -> Callable[[], QboLists | None] | None:
    """Reads the school's QuickBooks lists again for one press (None when they cannot be read:
    then the worker finds out whether an inactive object was reactivated)."""
    if lists is None:
        return None

    def read() -> QboLists | None:
        try:
            return lists.refresh(school)
        except ListsUnavailable:
            return None

    return read


def retry_failed(
    ledger: RetryLedger,
    school: str,
    *,
    operator: str,
    reason: str | None = None,
    ids: Sequence[str] = (),
    rows: WaitingRows | None = None,
    lists: QboListsPort | None = None,
) -> RetryOutcome:
    """Requeue the chosen events whose cause is fixed, in one transaction.

    The choice: `ids` (each resolved within the school; raises domain.retry.UnknownEvent), else
    the group `reason` (raises SelectionError for an unknown one), else every event waiting for
    an operator; groups are found through the view `rows` (the log is replayed without it).
    An event waiting on an inactive or missing QuickBooks object is requeued only when
    QuickBooks' lists, read again through `lists`, show it fixed.
    """
    chosen = select_for_retry(ledger, school, reason=reason, ids=ids, rows=None if ids else rows)
    result = ledger.retry_failed(
        school,
        chosen.events,
        operator=operator,
        scope=chosen.scope,
        qbo_lists=fresh_lists(lists, school),
    )
    return RetryOutcome(
        selected=len(chosen.events),
        requeued=result.requeued,
        skipped=result.skipped,
        blocked=[
            {"reason_code": b["reason_code"], "why": b["why"], "count": int(b.get("count", 1))}
            for b in result.blocked
        ],
        requeued_ids=list(result.requeued_ids),
    )


class NoteRequired(ValueError):
    """Dismiss needs a note saying why the event will not be sent."""

    def __init__(self) -> None:
        super().__init__(NOTE_REQUIRED)


class DismissLedger(Protocol):
    """The part of the ledger Dismiss uses."""

    def dismiss(self, school: str, ref: str, *, operator: str, note: str) -> FinancialEvent:
        """Stop one event from being sent (NotFound, TransitionRefused)."""
        ...


def dismiss(
    ledger: DismissLedger, school: str, ref: str, *, operator: str, note: str
) -> FinancialEvent:
    """Stop one event from being sent, kept in the log with who and why.

    Raises NoteRequired for a blank note, domain.financial_event.NotFound for an event the
    school does not have and TransitionRefused for one that can no longer be dismissed.
    """
    if not note.strip():
        raise NoteRequired
    return ledger.dismiss(school, ref, operator=operator, note=note)
