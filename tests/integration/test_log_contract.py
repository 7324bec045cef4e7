"""The log's contract, on SQLite and on PostgreSQL (the db_url fixture runs each test on both)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError, Mapper

from domain.application import FlightLedger
from domain.financial_event import FinancialEvent, Status
from domain.records import Record, RecordKind, parse_line
from tests.factories import flight, invoice_request, payment

BULK = 10_000


def _parse(kind: RecordKind, record: dict[str, Any]) -> Record:
    return parse_line(kind, json.dumps(record))


def _flights(count: int, start: int = 0) -> list[Record]:
    return [
        _parse(RecordKind.FLIGHT_ENDED, flight(f"F-{n:06d}", student=f"S-{n % 50}"))
        for n in range(start, start + count)
    ]


def count_notifications(ledger: FlightLedger) -> int:
    """How many events the log holds (read in pages)."""
    total, start = 0, 1
    while page := ledger.recorder.select_notifications(start=start, limit=5000):
        total += len(page)
        start = page[-1].id + 1
    return total


def test_append_records_one_event(ledger: FlightLedger) -> None:
    """Recording a flight appends exactly one event, readable as a pending FinancialEvent."""
    assert ledger.record("default", _parse(RecordKind.FLIGHT_ENDED, flight("F-1")))
    assert count_notifications(ledger) == 1
    event = ledger.find("default", "F-1")
    assert (event.status, event.kind, event.version) == (Status.PENDING, "flight-ended", 1)


def test_duplicate_is_refused_and_appends_nothing(ledger: FlightLedger) -> None:
    """Recording the same flight twice reports a duplicate and the log does not grow."""
    record = _parse(RecordKind.FLIGHT_ENDED, flight("F-2"))
    assert ledger.record("default", record) is True
    before = count_notifications(ledger)
    assert ledger.record("default", record) is False
    result = ledger.record_batch("default", [record])
    assert (result.recorded, result.duplicates) == (0, 1)
    assert count_notifications(ledger) == before == 1


def test_same_source_id_in_two_schools_is_two_facts(ledger: FlightLedger) -> None:
    """Deduplication is per school: the same flight id in another school is recorded."""
    record = _parse(RecordKind.FLIGHT_ENDED, flight("F-3"))
    assert ledger.record("default", record)
    assert ledger.record("other-school", record)
    assert count_notifications(ledger) == 2


def test_concurrent_writers_conflict_and_nothing_is_half_written(ledger: FlightLedger) -> None:
    """Two copies of one aggregate both saving: the second raises IntegrityError, and the other
    aggregate saved in that same call is not written either."""
    ledger.record("default", _parse(RecordKind.FLIGHT_ENDED, flight("F-4")))
    ledger.record("default", _parse(RecordKind.FLIGHT_ENDED, flight("F-5")))
    first, second = ledger.find("default", "F-4"), ledger.find("default", "F-4")
    bystander = ledger.find("default", "F-5")
    now = datetime(2026, 11, 20, 9, tzinfo=UTC)
    first.start_push(request_id="r-1", doc_number="FL-F-4", batched=False, actor="w1", at=now)
    second.start_push(request_id="r-2", doc_number="FL-F-4", batched=False, actor="w2", at=now)
    bystander.dismiss(operator="ops", note="test", at=now)
    ledger.save(first)
    before = count_notifications(ledger)
    with pytest.raises(IntegrityError):
        ledger.save(bystander, second)
    assert count_notifications(ledger) == before
    assert ledger.find("default", "F-4").request_id == "r-1"
    assert ledger.find("default", "F-5").status == Status.PENDING


def test_bulk_conflict_writes_nothing_of_the_batch(ledger: FlightLedger) -> None:
    """A large insert (the bulk path) that hits one recorded event writes none of its rows."""
    ledger.record_batch("default", _flights(1, start=99))
    events = [
        ledger.new_creation_event("default", r, actor="t", at=datetime(2026, 1, 1, tzinfo=UTC))
        for r in _flights(200, start=0)
    ]
    before = count_notifications(ledger)
    with pytest.raises(IntegrityError):
        ledger.recorder.insert_events([ledger.mapper.to_stored_event(e) for e in events])
    assert count_notifications(ledger) == before == 1


def test_reading_back_keeps_money_and_times_exact(ledger: FlightLedger) -> None:
    """Decimal money, quantities and aware datetimes (with their offsets) come back unchanged."""
    record = flight(
        "F-6",
        ended_at="2026-11-20T17:42:00.123456-05:00",
        charges=[
            {"code": "aircraft_rental", "quantity": "1.3", "rate": "165.07"},
            {"code": "fuel", "quantity": 2, "rate": 0.1},
        ],
    )
    ledger.record("default", _parse(RecordKind.FLIGHT_ENDED, record))
    ledger.record("default", _parse(RecordKind.PAYMENT_RECEIVED, payment("P-6", amount="0.10")))
    ledger.record("default", _parse(RecordKind.INVOICE_REQUESTED, invoice_request("R-6")))
    event = ledger.find("default", "F-6")
    assert event.amount == Decimal("214.79") and str(event.amount) == "214.79"
    charges = event.data["charges"]
    assert [(c["quantity"], c["rate"]) for c in charges] == [
        (Decimal("1.30"), Decimal("165.07")),
        (Decimal("2.00"), Decimal("0.10")),
    ]
    assert all(isinstance(c["rate"], Decimal) for c in charges)
    ended = event.data["ended_at"]
    assert ended == datetime(2026, 11, 20, 17, 42, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    assert ended.utcoffset() == timedelta(hours=-5)
    assert event.data["hobbs"] == {"start": Decimal("1234.50"), "end": Decimal("1235.70")}
    paid = ledger.find("default", "P-6")
    assert (paid.amount, str(paid.amount), paid.kind) == (
        Decimal("0.10"),
        "0.10",
        "payment-received",
    )
    assert ledger.find("default", "R-6").data["memo"] == "Ground school"
    history = ledger.history("default", "F-6")
    assert [h.type for h in history] == ["FlightEnded"]
    assert history[0].at == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # the ledger's clock


def test_dates_round_trip_through_the_transcoder(ledger: FlightLedger) -> None:
    """datetime.date values (registered by the application) encode and decode exactly."""
    from datetime import date

    transcoder = ledger.mapper.transcoder
    value = {"due": date(2026, 12, 5), "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    assert transcoder.decode(transcoder.encode(value)) == value


def test_stored_events_are_readable_by_the_library_mapper(ledger: FlightLedger) -> None:
    """The log is written by the library's own Mapper, so a stock Mapper reads it back."""
    records = [
        _parse(RecordKind.FLIGHT_ENDED, flight("F-7")),
        _parse(RecordKind.INVOICE_REQUESTED, invoice_request("R-7")),
        _parse(RecordKind.PAYMENT_RECEIVED, payment("P-7", applies_to="F-7")),
    ]
    assert type(ledger.mapper) is Mapper
    stock: Mapper[UUID] = Mapper(transcoder=ledger.mapper.transcoder)
    at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    for record in records:
        event = ledger.new_creation_event("default", record, actor="ops", at=at)
        assert ledger.mapper.to_stored_event(event) == stock.to_stored_event(event)
    ledger.record_batch("default", records, actor="ops")
    notifications = ledger.recorder.select_notifications(start=1, limit=10)
    decoded = [stock.to_domain_event(n) for n in notifications]
    assert [type(e) for e in decoded] == [
        FinancialEvent.FlightEnded,
        FinancialEvent.InvoiceRequested,
        FinancialEvent.PaymentReceived,
    ]
    assert [getattr(e, "actor", None) for e in decoded] == ["ops", "ops", "ops"]


def test_bulk_import_of_ten_thousand_records(ledger: FlightLedger) -> None:
    """10,000 records are recorded once, with notification ids in order; re-importing them
    reports 10,000 duplicates and appends nothing."""
    records = _flights(BULK)
    first = [ledger.record_batch("default", records[i : i + 5000]) for i in range(0, BULK, 5000)]
    assert sum(r.recorded for r in first) == BULK
    assert sum(r.duplicates for r in first) == 0
    ids: list[int] = []
    start = 1
    while page := ledger.recorder.select_notifications(start=start, limit=5000):
        ids.extend(n.id for n in page)
        start = page[-1].id + 1
    assert len(ids) == BULK and ids == sorted(ids) and len(set(ids)) == BULK
    assert ledger.recorder.max_notification_id() == ids[-1]
    again = [ledger.record_batch("default", records[i : i + 5000]) for i in range(0, BULK, 5000)]
    assert sum(r.recorded for r in again) == 0
    assert sum(r.duplicates for r in again) == BULK
    assert count_notifications(ledger) == BULK
    assert ledger.find("default", "F-009999").status == Status.PENDING


def test_bulk_batch_with_duplicates_inside_and_already_recorded(ledger: FlightLedger) -> None:
    """A batch repeating its own records and holding recorded ones appends each new one once."""
    ledger.record_batch("default", _flights(100))
    batch = _flights(300) + _flights(300)  # 100 recorded before, 200 new, every one twice
    result = ledger.record_batch("default", batch)
    assert (result.recorded, result.duplicates) == (200, 400)
    assert count_notifications(ledger) == 300


def test_normal_saves_after_bulk_continue_the_notification_sequence(ledger: FlightLedger) -> None:
    """An ordinary save after a bulk insert gets the next notification id."""
    ledger.record_batch("default", _flights(500))
    last = ledger.recorder.max_notification_id()
    assert last is not None
    event = ledger.find("default", "F-000001")
    event.dismiss(operator="ops", note="n", at=datetime(2026, 11, 21, tzinfo=UTC))
    recordings = ledger.save(event)
    assert [r.notification.id for r in recordings] == [last + 1]
    assert count_notifications(ledger) == 501


def test_history_names_each_events_position_in_the_whole_log(ledger: FlightLedger) -> None:
    """history's log_position is the event's notification id, interleaved with other facts."""
    ledger.record("default", _parse(RecordKind.FLIGHT_ENDED, flight("F-1")))
    ledger.record("default", _parse(RecordKind.FLIGHT_ENDED, flight("F-2")))
    ledger.dismiss("default", "F-1", operator="ops-ana", note="entered twice")
    history = ledger.history("default", "F-1")
    assert [(h.type, h.position, h.log_position) for h in history] == [
        ("FlightEnded", 1, 1),
        ("Dismissed", 2, 3),
    ]
    notes = ledger.recorder.select_notifications(start=1, limit=10)
    assert [(n.id, n.originator_id) for n in notes][::2] == [
        (1, ledger.find("default", "F-1").id),
        (3, ledger.find("default", "F-1").id),
    ]
