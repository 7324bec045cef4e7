"""The log's recorders answer the BulkLookups port, so imports and history take the bulk path."""

from __future__ import annotations

from domain.ports import BulkLookups
from domain.records import parse_flight_ended
from tests.factories import flight
from workers.bootstrap import open_ledger


def test_the_recorder_answers_bulk_lookups(db_url: str) -> None:
    """On SQLite and PostgreSQL the recorder is a BulkLookups, and its answers match the log."""
    ledger = open_ledger(db_url)
    try:
        assert isinstance(ledger.recorder, BulkLookups)
        event = ledger.new_financial_event("default", parse_flight_ended(flight()), actor="t")
        ledger.save(event)
        other = ledger.new_financial_event(
            "default", parse_flight_ended(flight(flight_id="F-2")), actor="t"
        )
        assert ledger.recorder.existing_originator_ids([event.id, other.id]) == {event.id}
        positions = ledger.recorder.log_positions(event.id)
        assert sorted(positions) == [1] and all(p >= 1 for p in positions.values())
        assert [h.log_position for h in ledger.history("default", str(event.id))] == [positions[1]]
    finally:
        ledger.close()
