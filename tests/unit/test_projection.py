"""The pure financial-event projection and the audit chain (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from domain.financial_event import FinancialEvent
from projections import audit
from projections.financial_events import (
    InMemoryFinancialEventView,
    apply_event,
    fold,
    ids_to_load,
    is_financial_topic,
)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def _created(event_id: UUID, reference: str = "F-1", school: str = "default") -> Any:
    return FinancialEvent.FlightEnded(  # type: ignore[call-arg]
        originator_id=event_id,
        originator_version=1,
        originator_topic="domain.financial_event:FinancialEvent",
        timestamp=T0,
        school=school,
        kind="flight-ended",
        reference=reference,
        student_id="S-7",
        student_name="Ana",
        amount=Decimal("270.00"),
        currency="USD",
        data={},
        actor="system",
    )


def _event(cls: type[Any], event_id: UUID, version: int, **fields: Any) -> Any:
    return cls(
        originator_id=event_id,
        originator_version=version,
        timestamp=T0 + timedelta(minutes=version),
        **fields,
    )


def _lifecycle(event_id: UUID) -> list[tuple[int, Any]]:
    return [
        (1, _created(event_id)),
        (
            2,
            _event(
                FinancialEvent.PushStarted,
                event_id,
                2,
                attempt=1,
                request_id="r",
                doc_number="FL-1",
                batched=False,
                actor="w",
            ),
        ),
        (
            3,
            _event(
                FinancialEvent.ActionRequired,
                event_id,
                3,
                reason_code="missing_mapping",
                message="Map charge code fuel",
                missing=["charge:fuel"],
                actor="w",
            ),
        ),
    ]


def test_creation_makes_a_pending_row() -> None:
    """A FlightEnded event makes a pending row with the record's facts and its position."""
    event_id = uuid4()
    row = apply_event(None, _created(event_id), 7)
    assert row is not None
    assert (row.status, row.reference, row.amount, row.attempts, row.position) == (
        "pending",
        "F-1",
        Decimal("270.00"),
        0,
        7,
    )


def test_statuses_follow_the_domain_events() -> None:
    """PushStarted -> syncing with attempts; ActionRequired -> reason and missing keys."""
    event_id = uuid4()
    rows = fold({}, _lifecycle(event_id))
    row = rows[event_id]
    assert row.status == "action_required"
    assert row.attempts == 1
    assert row.reason_code == "missing_mapping"
    assert row.missing == ("charge:fuel",)
    assert row.updated_at == T0 + timedelta(minutes=3)


def test_failure_categories_map_to_statuses() -> None:
    """PushFailed transient/exhausted/uncertain -> retrying/failed/uncertain with QBO's text."""
    event_id = uuid4()
    base = apply_event(None, _created(event_id), 1)
    for category, status in (
        ("transient", "retrying"),
        ("exhausted", "failed"),
        ("uncertain", "uncertain"),
    ):
        failed = _event(
            FinancialEvent.PushFailed,
            event_id,
            2,
            category=category,
            code="500",
            message="Service down",
            actor="w",
        )
        row = apply_event(base, failed, 2)
        assert row is not None
        assert (row.status, row.reason) == (status, "Service down")


def test_retry_clears_the_reason_and_dismiss_keeps_the_note() -> None:
    """RetryRequested -> pending with no reason; Dismissed -> dismissed with the note."""
    event_id = uuid4()
    changes = _lifecycle(event_id)
    changes.append(
        (4, _event(FinancialEvent.RetryRequested, event_id, 4, operator="ops", scope="all"))
    )
    row = fold({}, changes)[event_id]
    assert (row.status, row.reason_code, row.reason, row.missing) == ("pending", None, "", ())
    dismissed = _event(FinancialEvent.Dismissed, event_id, 5, operator="ops", note="duplicate")
    after = apply_event(row, dismissed, 5)
    assert after is not None
    assert (after.status, after.reason) == ("dismissed", "duplicate")


def test_fold_continues_from_existing_rows_and_asks_only_for_unknown_ids() -> None:
    """A batch loads rows only for events created earlier, and folds onto them."""
    first, second = uuid4(), uuid4()
    earlier = fold({}, [(1, _created(first))])
    batch = [
        (2, _created(second, "F-2")),
        (
            3,
            _event(FinancialEvent.Synced, first, 2, qbo_id="130", doc_number="FL-1", actor="w"),
        ),
    ]
    assert ids_to_load(batch) == {first}
    changed = fold(earlier, batch)
    assert changed[first].status == "synced"
    assert changed[first].qbo_id == "130"
    assert changed[second].status == "pending"


def test_in_memory_view_groups_and_counts() -> None:
    """Reason groups count rows, name the oldest as example and union the missing keys."""
    view = InMemoryFinancialEventView()
    for n in range(3):
        for position, event in _lifecycle(uuid4()):
            view.apply(n * 10 + position, event)
    view.apply(40, _created(uuid4(), "F-9"))
    assert view.counts("default") == {"action_required": 3, "pending": 1}
    (group,) = view.reason_groups("default")
    assert (group.reason_code, group.count, group.missing) == (
        "missing_mapping",
        3,
        ("charge:fuel",),
    )
    assert [r.reference for r in view.list("default", status="pending")] == ["F-9"]
    assert view.counts("other") == {}
    assert view.max_tracking_id() == 40


def test_topics_of_other_aggregates_are_not_financial() -> None:
    """Only FinancialEvent topics feed the view."""
    assert is_financial_topic("domain.financial_event:FinancialEvent.Synced")
    assert not is_financial_topic("domain.connection:Connection.Connected")


@dataclass(frozen=True)
class _Stored:
    id: int
    originator_id: object
    originator_version: int
    topic: str
    state: bytes


def _log(n: int) -> list[_Stored]:
    return [_Stored(i, f"agg-{i}", 1, "t:T", f"state-{i}".encode()) for i in range(1, n + 1)]


def test_chain_verifies_an_untouched_log() -> None:
    """Links computed from the log verify against the same log."""
    log = _log(5)
    links = audit.extend(0, audit.GENESIS, log)
    verifier = audit.ChainVerifier()
    verifier.check(log, links)
    verdict = verifier.verdict()
    assert verdict.ok
    assert verdict.events == 5
    assert verdict.head == links[-1][1].hex()


def test_chain_names_the_first_altered_position() -> None:
    """Changing one event's stored bytes breaks the chain at exactly that position."""
    log = _log(5)
    links = audit.extend(0, audit.GENESIS, log)
    log[2] = _Stored(3, "agg-3", 1, "t:T", b"forged")
    verifier = audit.ChainVerifier()
    verifier.check(log, links)
    assert verifier.verdict().first_bad_position == 3
    assert not verifier.ok


def test_chain_names_a_deleted_position() -> None:
    """A chained event missing from the log is reported at its position."""
    log = _log(5)
    links = audit.extend(0, audit.GENESIS, log)
    verifier = audit.ChainVerifier()
    verifier.check([n for n in log if n.id != 4], links)
    assert verifier.first_bad == 4


def test_chain_extends_past_its_head_only() -> None:
    """Extending skips positions already chained and continues from the head hash."""
    log = _log(6)
    full = audit.extend(0, audit.GENESIS, log)
    head_position, head_hash = full[2]
    assert audit.extend(head_position, head_hash, log) == full[3:]
