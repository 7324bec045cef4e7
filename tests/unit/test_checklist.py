"""Unit tests of the setup checklist lines (pure, in-memory ledger)."""

from __future__ import annotations

from datetime import timedelta

from domain.application import FlightLedger
from domain.checklist import ChecklistItem, build_checklist
from domain.mapping_check import usage_problems
from domain.ports import FixedClock
from domain.qbo_lists import QboLists, QboObject
from tests.fakes import (
    T0,
    FakeFinancialEventView,
    connect,
    map_everything,
    record_flights,
    record_payment,
)

SCHOOL = "default"


def _lists(ledger: FlightLedger, inactive_items: tuple[str, ...] = ()) -> QboLists:
    """QuickBooks lists holding every mapped object (the given items inactive)."""
    m = ledger.mappings(SCHOOL)
    objects = {
        "Item": {i: QboObject("Item", i, f"Item {i}", i not in inactive_items)
                 for i in m.charges.values()},
        "Customer": {c: QboObject("Customer", c, f"C {c}", True) for c in m.students.values()},
        "Account": {p.deposit_account_id: QboObject("Account", p.deposit_account_id, "Bank", True)
                    for p in m.payment_types.values()},
    }  # fmt: skip
    return QboLists(SCHOOL, "realm", T0, objects)


def _lines(
    ledger: FlightLedger, last_seen: object = None, lists: QboLists | None = None
) -> dict[str, ChecklistItem]:
    usage = FakeFinancialEventView(ledger).usage(SCHOOL)
    items = build_checklist(
        connection=ledger.connection(SCHOOL),
        mappings=ledger.mappings(SCHOOL),
        problems=usage_problems(usage, ledger.mappings(SCHOOL), lists),
        auto_invoice=ledger.settings(SCHOOL).auto_invoice,
        worker_last_seen=last_seen,  # type: ignore[arg-type]
        now=ledger.clock.now(),
    )
    return {i.item: i for i in items}


def test_fresh_school_says_what_to_do_on_every_line() -> None:
    """Never connected, no defaults, unmapped codes/students, no worker: each line says the fix."""
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))
    record_flights(ledger, 2)
    lines = _lines(ledger)
    assert "connection connect" in lines["QuickBooks connected"].fix
    defaults = lines["Invoice defaults set (term, memo, income account)"]
    assert not defaults.ok and "--term" in defaults.fix and "--income-account" in defaults.fix
    charges = lines["Every charge code in use mapped to an active Item"]
    assert "mappings set charge aircraft_rental --item ID" in charges.fix
    assert "F-1" in charges.fix
    students = lines["Every student with flights mapped to a Customer"]
    assert "mappings set student S-7 --customer ID" in students.fix
    assert lines["Auto-invoice on"].ok
    worker = lines["Worker seen recently"]
    assert worker.fix == "no worker has run: start `flightledger worker`"


def test_ready_school_is_all_ok_and_flags_inactive_and_stale_worker() -> None:
    """A ready school is all ok; an inactive charge mapping and an old heartbeat are flagged."""
    clock = FixedClock(T0)
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    connect(ledger)
    map_everything(ledger)
    record_flights(ledger, 1)
    record_payment(ledger, "P-1")
    lines = _lines(ledger, T0 - timedelta(minutes=1), _lists(ledger))
    assert all(line.ok for line in lines.values()), lines
    assert lines["Worker seen recently"].detail == "last seen 1 minute ago"
    ledger.map_charge(SCHOOL, "aircraft_rental", "5", operator="t")
    ledger.set_auto_invoice(SCHOOL, False, operator="t")
    lines = _lines(ledger, T0 - timedelta(minutes=42), _lists(ledger, inactive_items=("5",)))
    charges = lines["Every charge code in use mapped to an active Item"]
    expected = (
        "Charge code aircraft_rental is mapped to QuickBooks item 5 (Item 5), which is inactive"
    )
    assert not charges.ok and expected in charges.fix
    before = _lists(ledger)
    ledger.map_charge(SCHOOL, "aircraft_rental", "999", operator="t")
    gone = _lines(ledger, None, before)["Every charge code in use mapped to an active Item"]
    assert not gone.ok and "item 999" in gone.fix, "an id QuickBooks does not have is flagged"
    assert lines["Auto-invoice on"].fix == "flightledger settings auto-invoice on"
    assert lines["Worker seen recently"].fix.startswith("last seen 42 minutes ago")
