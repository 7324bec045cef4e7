"""The push pass's log lines carry its context (issue 10): school and realm for the whole pass,
event_id and request_id (the QuickBooks requestid) for each push, bound with structlog's
contextvars and gone when the pass ends. Records are read as data (structlog.testing's
LogCapture through tests/logging_support.py, merge_contextvars first as in workers/logging.py).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
import structlog

from domain.application import FlightLedger
from domain.ids import financial_event_id, request_id
from domain.ports import FixedClock, InvoiceDraft, PushOutcome
from services.push_pass import SyncEngine
from tests.fakes import (
    T0,
    FakeAccountingGateway,
    FakeFinancialEventView,
    ready_school,
    record_flights,
)
from tests.logging_support import captured_logs, events

SCHOOL = "default"
REALM = "9130350000000001"  # tests.fakes.connect
adapter_log = structlog.get_logger("adapters.quickbooks.session")


@pytest.fixture
def ledger() -> FlightLedger:
    """An in-memory ledger, the school connected to REALM and mapped."""
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))
    ready_school(ledger)
    return ledger


def engine(ledger: FlightLedger, gateway: FakeAccountingGateway) -> SyncEngine:
    """An engine over the fake view and gateway."""
    return SyncEngine(
        ledger, FakeFinancialEventView(ledger), lambda _s: gateway, rng=random.Random(3)
    )


def event_id(ref: str) -> str:
    """The financial event id of flight `ref`."""
    return str(financial_event_id(SCHOOL, "flight-ended", ref))


def test_a_failing_push_logs_school_realm_event_and_request_id(ledger: FlightLedger) -> None:
    """A push QuickBooks answers 503: push_failed names the school, realm, event and requestid,
    none of which was passed to the call; nothing stays bound after the pass."""
    (flight,) = record_flights(ledger, 1)
    gateway = FakeAccountingGateway(ledger=ledger)
    gateway.then(financial_event_id(SCHOOL, "flight-ended", flight), "transient")
    with captured_logs() as logs:
        engine(ledger, gateway).run_pass(SCHOOL)
    (failed,) = events(logs, "push_failed")
    ident = event_id(flight)
    assert failed["school"] == SCHOOL and failed["realm"] == REALM
    assert failed["event_id"] == ident
    assert failed["request_id"] == request_id(financial_event_id(SCHOOL, "flight-ended", flight), 0)
    assert (failed["category"], failed["code"]) == ("transient", "503")
    assert structlog.contextvars.get_contextvars() == {}


def test_each_outcome_of_a_batch_names_its_own_event(ledger: FlightLedger) -> None:
    """Three invoices in one batch, one refused: each outcome's line carries its own event id
    and requestid (nothing of one event bleeds into the next line)."""
    flights = record_flights(ledger, 3)
    gateway = FakeAccountingGateway(ledger=ledger)
    gateway.then(financial_event_id(SCHOOL, "flight-ended", flights[1]), "validation")
    with captured_logs() as logs:
        engine(ledger, gateway).run_pass(SCHOOL)
    assert gateway.calls == [("batch", 3)]
    (refused,) = events(logs, "action_required_recorded")
    assert refused["event_id"] == event_id(flights[1]) and refused["reason_code"] == "validation"
    assert refused["request_id"] == str(financial_event_id(SCHOOL, "flight-ended", flights[1]))
    pushed = events(logs, "event_pushed")
    assert sorted(e["event_id"] for e in pushed) == sorted(event_id(f) for f in flights[::2])
    for entry in [refused, *pushed]:
        assert (entry["school"], entry["realm"]) == (SCHOOL, REALM)
        assert entry["request_id"] == entry["event_id"]  # generation 0: the event's id


class LoggingGateway(FakeAccountingGateway):
    """A fake gateway that logs inside each single create, as the real one does on a retry."""

    def push_invoice(self, draft: InvoiceDraft) -> PushOutcome:
        """Log, then create."""
        adapter_log.info("qbo_call_retried", attempt=2)
        return super().push_invoice(draft)

    def push_invoices(self, drafts: Sequence[InvoiceDraft]) -> list[PushOutcome]:
        """Singles only in this test."""
        raise AssertionError("one invoice goes alone")


def test_lines_logged_during_a_push_carry_the_push(ledger: FlightLedger) -> None:
    """What the gateway logs while a single create is in flight names the event and requestid."""
    (flight,) = record_flights(ledger, 1)
    with captured_logs() as logs:
        engine(ledger, LoggingGateway(ledger=ledger)).run_pass(SCHOOL)
    (retried,) = events(logs, "qbo_call_retried")
    assert retried["event_id"] == event_id(flight) == retried["request_id"]
    assert (retried["school"], retried["realm"]) == (SCHOOL, REALM)
