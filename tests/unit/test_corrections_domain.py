"""Unit tests of the correction rules on the aggregates (in-memory log, no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from domain.application import FlightLedger
from domain.financial_event import FailureCategory, Status
from domain.ports import FixedClock
from domain.records import (
    RecordError,
    RecordKind,
    parse_correction_line,
    parse_flight_ended,
    parse_payment_received,
)
from tests.factories import amendment, cancellation, flight, payment, refund

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
SCHOOL = "default"


@pytest.fixture
def app() -> FlightLedger:
    """An in-memory (popo) application with a fixed clock and one recorded flight F-1."""
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(NOW))
    assert ledger.record(SCHOOL, parse_flight_ended(flight("F-1")))
    return ledger


def correct(app: FlightLedger, kind: RecordKind, record: dict[str, object]) -> bool:
    """Record one correction through the parser."""
    return app.record_correction(SCHOOL, parse_correction_line(kind, json.dumps(record)))


def test_amend_before_sync_replaces_the_charges_and_repeats_are_duplicates(
    app: FlightLedger,
) -> None:
    """An amendment is a new revision; the same amendment again appends nothing."""
    assert correct(app, RecordKind.FLIGHT_AMENDED, amendment("F-1", "1.0"))
    assert not correct(app, RecordKind.FLIGHT_AMENDED, amendment("F-1", "1.0"))
    event = app.find(SCHOOL, "F-1")
    assert (event.revision, str(event.amount), event.status) == (2, "225.00", Status.PENDING)
    assert not event.correction_due  # never sent: the push sends the latest version


def test_no_correction_while_the_push_may_have_landed(app: FlightLedger) -> None:
    """Syncing or uncertain: the log cannot know which version QBO holds, so it refuses."""
    event = app.find(SCHOOL, "F-1")
    event.start_push(request_id="r", doc_number="FL-F-1", batched=False, actor="w", at=NOW)
    app.save(event)
    with pytest.raises(RecordError) as refused:
        correct(app, RecordKind.FLIGHT_CANCELLED, cancellation("F-1"))
    assert (
        refused.value.field == "flight_id" and "may be reaching QuickBooks" in refused.value.reason
    )
    event = app.find(SCHOOL, "F-1")
    event.mark_failed(
        category=FailureCategory.UNCERTAIN, code="504", message="timeout", actor="w", at=NOW
    )
    app.save(event)
    with pytest.raises(RecordError):
        correct(app, RecordKind.FLIGHT_AMENDED, amendment("F-1", "1.0"))
    event = app.find(SCHOOL, "F-1")
    event.mark_synced(qbo_id="7", doc_number="FL-F-1", actor="w", at=NOW)
    app.save(event)
    assert correct(app, RecordKind.FLIGHT_AMENDED, amendment("F-1", "1.0"))
    event = app.find(SCHOOL, "F-1")
    assert event.correction_due and event.qbo_amount is not None
    assert (event.applied_key, event.target_key, str(event.qbo_amount)) == ("v1", "v2", "270.00")


def test_cancel_before_sync_is_final_and_refunds_stay_within_the_payment(
    app: FlightLedger,
) -> None:
    """Cancelled unsent flights are never sent; refunds above the payment name `amount`."""
    assert correct(app, RecordKind.FLIGHT_CANCELLED, cancellation("F-1"))
    assert app.find(SCHOOL, "F-1").status == Status.CANCELLED
    assert not correct(app, RecordKind.FLIGHT_CANCELLED, cancellation("F-1"))
    assert app.record(SCHOOL, parse_payment_received(payment("P-1", amount="100.00")))
    assert correct(app, RecordKind.PAYMENT_REFUNDED, refund("R-1", "P-1", "60.00"))
    with pytest.raises(RecordError) as refused:
        correct(app, RecordKind.PAYMENT_REFUNDED, refund("R-2", "P-1", "40.01"))
    assert refused.value.field == "amount"
    assert correct(app, RecordKind.PAYMENT_REFUNDED, refund("R-2", "P-1", "40.00"))
    assert str(app.find(SCHOOL, "P-1").refunded) == "100.00"
    with pytest.raises(RecordError) as unknown:
        correct(app, RecordKind.PAYMENT_REFUNDED, refund("R-3", "P-9", "1.00"))
    assert (unknown.value.field, unknown.value.reason) == (
        "payment_id",
        "no payment 'P-9' has been recorded",
    )
