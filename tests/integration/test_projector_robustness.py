"""The projector stops on an unreadable stored event and retries superseded batches a bounded
number of times (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import Notification, StoredEvent

from adapters.views import open_view
from domain.application import FlightLedger
from domain.records import RecordKind, parse_line
from projections.financial_events import UnreadableEvent
from projections.view import ProjectedView, TrackingConflict
from tests.factories import flight
from workers import projector as projector_module
from workers.projector import Projector


@pytest.fixture
def view(db_url: str, ledger: FlightLedger) -> Iterator[ProjectedView]:
    """The view next to the log, on both backends."""
    opened = open_view(db_url)
    yield opened
    opened.close()


def _record(ledger: FlightLedger, *flight_ids: str) -> None:
    records = [parse_line(RecordKind.FLIGHT_ENDED, json.dumps(flight(f))) for f in flight_ids]
    ledger.record_batch("default", records)


def _append_raw(ledger: FlightLedger, topic: str, state: bytes) -> int:
    ledger.recorder.insert_events(
        [StoredEvent(originator_id=uuid4(), originator_version=1, topic=topic, state=state)]
    )
    position = ledger.recorder.max_notification_id()
    assert position is not None
    return position


def test_unreadable_event_stops_the_projector_with_its_position(
    ledger: FlightLedger, view: ProjectedView
) -> None:
    """A corrupt stored event raises 'log position N cannot be read' and its batch is not
    written; the batches before it are."""
    _record(ledger, "F-1", "F-2")
    Projector(ledger, view).catch_up()
    _record(ledger, "F-3")
    bad = _append_raw(ledger, "domain.financial_event:FinancialEvent.Synced", b"\x00garbage")
    _record(ledger, "F-4")
    with pytest.raises(UnreadableEvent) as caught:
        Projector(ledger, view).catch_up()
    assert str(caught.value).startswith(f"log position {bad} cannot be read: ")
    assert view.max_tracking_id() == bad - 2
    assert sorted(r.reference for r in view.list("default")) == ["F-1", "F-2"]


def test_event_missing_a_field_stops_with_a_stated_reason(
    ledger: FlightLedger, view: ProjectedView
) -> None:
    """A decodable event that lacks a field the row needs is named, not an AttributeError."""
    _record(ledger, "F-1")
    state = b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-20T08:00:00+00:00"}}'
    bad = _append_raw(ledger, "domain.financial_event:FinancialEvent.FlightEnded", state)
    with pytest.raises(UnreadableEvent, match=f"log position {bad} cannot be read: .*no field"):
        Projector(ledger, view).rebuild()
    assert view.max_tracking_id() == 0


class _Conflicting:
    """A view whose apply_batch is superseded `times` times before it goes through."""

    def __init__(self, inner: ProjectedView, times: int) -> None:
        self.inner = inner
        self.times = times
        self.calls = 0

    def apply_batch(
        self,
        changes: Sequence[tuple[int, Any]],
        notifications: Sequence[Notification],
        *,
        previous: int,
        position: int,
    ) -> int:
        self.calls += 1
        if self.calls <= self.times:
            raise TrackingConflict(f"view moved (call {self.calls})")
        return self.inner.apply_batch(changes, notifications, previous=previous, position=position)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_superseded_batch_is_retried_then_applied(
    ledger: FlightLedger, view: ProjectedView
) -> None:
    """Two conflicts in a row, then the batch applies: the projector returns its size."""
    _record(ledger, "F-1", "F-2")
    conflicting = _Conflicting(view, times=2)
    applied = Projector(ledger, conflicting).run_batch()
    assert applied == 2
    assert conflicting.calls == 3
    assert view.max_tracking_id() == 2


def test_endless_conflicts_stop_after_a_bounded_number_of_retries(
    ledger: FlightLedger, view: ProjectedView
) -> None:
    """A view that is always superseded makes run_batch raise TrackingConflict after
    MAX_CONFLICT_RETRIES attempts (no unbounded recursion)."""
    _record(ledger, "F-1")
    conflicting = _Conflicting(view, times=10**6)
    with pytest.raises(TrackingConflict, match="superseded"):
        Projector(ledger, conflicting).run_batch()
    assert conflicting.calls == projector_module.MAX_CONFLICT_RETRIES
    assert view.max_tracking_id() == 0
