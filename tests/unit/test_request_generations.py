"""requestid generations: a new requestid only after a definite refusal and Retry Failed."""

from __future__ import annotations

import random

import pytest

from domain.application import FlightLedger
from domain.financial_event import FailureCategory, Status
from domain.ids import financial_event_id, request_id
from domain.ports import FixedClock, ReasonCode
from services.push_pass import SyncEngine
from tests.fakes import (
    T0,
    FakeAccountingGateway,
    FakeFinancialEventView,
    ready_school,
    record_flights,
)

SCHOOL = "default"


@pytest.fixture
def ledger() -> FlightLedger:
    """An in-memory ledger at T0."""
    return FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))


def _sent_ids(ledger: FlightLedger, ref: str) -> list[str]:
    return [
        str(e.data["request_id"]) for e in ledger.history(SCHOOL, ref) if e.type == "PushStarted"
    ]


def _engine(ledger: FlightLedger, gateway: FakeAccountingGateway) -> SyncEngine:
    return SyncEngine(
        ledger, FakeFinancialEventView(ledger), lambda _s: gateway, rng=random.Random(3)
    )


def test_request_id_of_generation_zero_is_the_event_id() -> None:
    """Generation 0 keeps the historical id (the event's UUID); later ones are suffixed."""
    event_id = financial_event_id(SCHOOL, "flight-ended", "F-1")
    assert request_id(event_id) == str(event_id)
    assert request_id(event_id, 2) == f"{event_id}-r2"
    assert len(request_id(event_id, 999)) <= 50


def test_retry_after_a_refusal_sends_a_new_request_id_and_syncs(ledger: FlightLedger) -> None:
    """6000 replayed for the old id: Retry Failed uses generation 1, which QBO creates."""
    ready_school(ledger)
    record_flights(ledger, 1)
    gateway = FakeAccountingGateway(ledger=ledger)
    f1 = ledger.find(SCHOOL, "F-1")
    gateway.then(f1.id, "validation")
    engine = _engine(ledger, gateway)
    engine.run_pass(SCHOOL)
    assert ledger.find(SCHOOL, "F-1").reason_code == ReasonCode.VALIDATION
    ledger.retry_failed(SCHOOL, [ledger.find(SCHOOL, "F-1")], operator="op", scope="ids")
    engine.run_pass(SCHOOL)
    event = ledger.find(SCHOOL, "F-1")
    assert event.status == Status.SYNCED
    assert _sent_ids(ledger, "F-1") == [str(f1.id), f"{f1.id}-r1"]
    assert ("lookup", 1) in gateway.calls  # the DocNumber guards the new generation
    assert gateway.invoice_count == 1


def test_uncertain_recovery_keeps_the_request_id(ledger: FlightLedger) -> None:
    """Uncertain, then auth_expired, then Retry Failed: the same id (a replay settles it)."""
    ready_school(ledger)
    record_flights(ledger, 1)
    f1 = ledger.find(SCHOOL, "F-1")
    f1.start_push(request_id=str(f1.id), doc_number="FL-F-1", batched=False, actor="w", at=T0)
    f1.mark_failed(
        category=FailureCategory.UNCERTAIN, code="t", message="timeout", actor="w", at=T0
    )
    f1.require_action(
        reason_code=ReasonCode.AUTH_EXPIRED, message="Reconnect", missing=[], actor="w", at=T0
    )
    f1.request_retry(operator="op", scope="ids", at=T0)
    assert f1.generation == 0


def test_an_auth_failure_while_syncing_keeps_the_request_id(ledger: FlightLedger) -> None:
    """A 401 never reached QBO's requestid store: the retry keeps generation 0."""
    ready_school(ledger)
    record_flights(ledger, 1)
    f1 = ledger.find(SCHOOL, "F-1")
    f1.start_push(request_id=str(f1.id), doc_number="FL-F-1", batched=False, actor="w", at=T0)
    f1.require_action(
        reason_code=ReasonCode.AUTH_FAILED, message="401", missing=[], actor="w", at=T0
    )
    f1.request_retry(operator="op", scope="ids", at=T0)
    assert f1.generation == 0
    f1.start_push(request_id=str(f1.id), doc_number="FL-F-1", batched=False, actor="w", at=T0)
    f1.require_action(
        reason_code=ReasonCode.VALIDATION, message="6000", missing=[], actor="w", at=T0
    )
    f1.request_retry(operator="op", scope="ids", at=T0)
    assert f1.generation == 1
