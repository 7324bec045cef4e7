"""Custom transaction numbers off: QuickBooks ignores our DocNumbers, so nothing relies on them."""

from __future__ import annotations

import random

import pytest

from domain.application import FlightLedger
from domain.checklist import CUSTOM_NUMBERS_OFF, build_checklist
from domain.financial_event import Status
from domain.ports import FixedClock
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
    """An in-memory ledger at T0 with a ready school."""
    made = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))
    ready_school(made)
    return made


def _numbers(ledger: FlightLedger, on: bool) -> None:
    connection = ledger.connection(SCHOOL)
    connection.record_preferences(custom_txn_numbers=on, at=T0)
    ledger.save(connection)


def _engine(ledger: FlightLedger, gateway: FakeAccountingGateway) -> SyncEngine:
    return SyncEngine(
        ledger, FakeFinancialEventView(ledger), lambda _s: gateway, rng=random.Random(5)
    )


def test_numbers_off_sends_each_invoice_alone_with_its_request_id(ledger: FlightLedger) -> None:
    """No batches when QBO will not keep DocNumbers: every create carries its own requestid."""
    _numbers(ledger, False)
    record_flights(ledger, 3)
    gateway = FakeAccountingGateway(ledger=ledger)
    _engine(ledger, gateway).run_pass(SCHOOL)
    assert gateway.calls == [("invoice", 1)] * 3
    assert {e.status for e in ledger.iter_financial_events(SCHOOL)} == {Status.SYNCED}


def test_numbers_on_still_batches(ledger: FlightLedger) -> None:
    """With custom numbers on (or never read) fresh invoices go in one batch."""
    _numbers(ledger, True)
    record_flights(ledger, 3)
    gateway = FakeAccountingGateway(ledger=ledger)
    _engine(ledger, gateway).run_pass(SCHOOL)
    assert gateway.calls == [("batch", 3)]


def test_numbers_off_retry_after_refusal_makes_no_doc_number_lookup(
    ledger: FlightLedger,
) -> None:
    """A new requestid generation is not guarded by a DocNumber QBO did not keep."""
    _numbers(ledger, False)
    record_flights(ledger, 1)
    gateway = FakeAccountingGateway(ledger=ledger)
    gateway.then(ledger.find(SCHOOL, "F-1").id, "validation")
    engine = _engine(ledger, gateway)
    engine.run_pass(SCHOOL)
    ledger.retry_failed(SCHOOL, [ledger.find(SCHOOL, "F-1")], operator="op", scope="ids")
    engine.run_pass(SCHOOL)
    assert ledger.find(SCHOOL, "F-1").status == Status.SYNCED
    assert ("lookup", 1) not in gateway.calls


def test_checklist_says_when_quickbooks_will_not_keep_our_numbers(ledger: FlightLedger) -> None:
    """The checklist gains a failing line only when the preference was read as off."""

    def lines() -> list[str]:
        items = build_checklist(
            connection=ledger.connection(SCHOOL),
            mappings=ledger.mappings(SCHOOL),
            problems=[],
            auto_invoice=True,
            worker_last_seen=T0,
            now=T0,
        )
        return [i.item for i in items if not i.ok]

    assert CUSTOM_NUMBERS_OFF.item not in lines()
    _numbers(ledger, False)
    assert CUSTOM_NUMBERS_OFF.item in lines()
    _numbers(ledger, True)
    assert CUSTOM_NUMBERS_OFF.item not in lines()
