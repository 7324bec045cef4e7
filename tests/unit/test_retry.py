"""Unit tests of Retry Failed and dismiss selection and refusals (in-memory ledger)."""

from __future__ import annotations

import random

import pytest

from domain.application import FlightLedger
from domain.financial_event import Status, TransitionRefused
from domain.ids import financial_event_id
from domain.ports import FixedClock
from domain.retry import SelectionError
from services.push_pass import SyncEngine
from services.retry import retry_failed
from tests.fakes import (
    T0,
    FakeAccountingGateway,
    FakeFinancialEventView,
    connect,
    map_everything,
    record_flights,
)

SCHOOL = "default"


@pytest.fixture
def ledger() -> FlightLedger:
    """An in-memory ledger at T0."""
    return FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))


def _pass(ledger: FlightLedger, gateway: FakeAccountingGateway) -> None:
    SyncEngine(
        ledger, FakeFinancialEventView(ledger), lambda s: gateway, rng=random.Random(1)
    ).run_pass(SCHOOL)


def _statuses(ledger: FlightLedger) -> set[str]:
    return {e.status.value for e in ledger.iter_financial_events(SCHOOL)}


def test_missing_mapping_is_blocked_naming_the_key_then_requeued_once_mapped(
    ledger: FlightLedger,
) -> None:
    """Retry refuses while the charge is unmapped (naming it), requeues once mapped, then syncs."""
    gateway = FakeAccountingGateway()
    connect(ledger)
    map_everything(ledger, skip_charge="instructor_dual")
    record_flights(ledger, 3)
    _pass(ledger, gateway)
    blocked = retry_failed(ledger, SCHOOL, reason="missing_mapping", ids=[], operator="ana")
    assert blocked.requeued == 0
    (group,) = blocked.blocked
    assert group["reason_code"] == "missing_mapping" and group["count"] == 3
    assert "charge:instructor_dual" in group["why"]
    ledger.map_charge(SCHOOL, "instructor_dual", "2", operator="ana")
    done = retry_failed(ledger, SCHOOL, reason="missing_mapping", ids=[], operator="ana")
    assert (done.requeued, done.blocked) == (3, [])
    f1 = ledger.financial_event(financial_event_id(SCHOOL, "flight-ended", "F-1"))
    assert ledger.history(SCHOOL, "F-1")[-1].actor == "ana"
    assert f1.status == Status.PENDING
    _pass(ledger, gateway)
    assert _statuses(ledger) == {"synced"}
    assert gateway.invoice_count == 3


def test_auth_expired_is_blocked_until_reconnected(ledger: FlightLedger) -> None:
    """Retry says Reconnect while the connection is expired; after reconnecting it requeues."""
    gateway = FakeAccountingGateway(auth_expires_after=0)
    connect(ledger)
    map_everything(ledger)
    record_flights(ledger, 2)
    _pass(ledger, gateway)
    assert {e.reason_code for e in ledger.iter_financial_events(SCHOOL)} == {"auth_expired"}
    refused = retry_failed(ledger, SCHOOL, reason=None, ids=[], operator="ana")
    assert refused.requeued == 0
    assert "Reconnect" in refused.blocked[0]["why"]
    connect(ledger)
    gateway.auth_expires_after = None
    assert retry_failed(ledger, SCHOOL, reason="auth_expired", ids=[], operator="ana").requeued == 2
    _pass(ledger, gateway)
    assert _statuses(ledger) == {"synced"}


def test_pressing_twice_does_nothing_the_second_time(ledger: FlightLedger) -> None:
    """A second Retry Failed on requeued (pending) events appends nothing and counts skipped."""
    connect(ledger)
    map_everything(ledger, skip_charge="instructor_dual")
    record_flights(ledger, 2)
    _pass(ledger, FakeAccountingGateway())
    ledger.map_charge(SCHOOL, "instructor_dual", "2", operator="ana")
    assert retry_failed(ledger, SCHOOL, reason=None, ids=["F-1", "F-2"], operator="a").requeued == 2
    head = ledger.recorder.max_notification_id()
    again = retry_failed(ledger, SCHOOL, reason=None, ids=["F-1", "F-2"], operator="a")
    assert (again.requeued, again.skipped) == (0, 2)
    assert ledger.recorder.max_notification_id() == head


def test_selection_refuses_unknown_ids_and_reasons(ledger: FlightLedger) -> None:
    """An unknown id or reason is refused with a stated reason; nothing is appended."""
    record_flights(ledger, 1)
    with pytest.raises(SelectionError, match="no financial event 'F-404'"):
        retry_failed(ledger, SCHOOL, reason=None, ids=["F-404"], operator="a")
    with pytest.raises(SelectionError, match="unknown reason"):
        retry_failed(ledger, SCHOOL, reason="bogus", ids=[], operator="a")


def test_dismiss_records_operator_and_refuses_synced(ledger: FlightLedger) -> None:
    """Dismiss keeps who and why; a synced event cannot be dismissed."""
    connect(ledger)
    map_everything(ledger)
    record_flights(ledger, 2)
    ledger.dismiss(SCHOOL, "F-1", operator="ana", note="duplicate booking")
    _pass(ledger, FakeAccountingGateway())
    entry = ledger.history(SCHOOL, "F-1")[-1]
    assert (entry.type, entry.actor, entry.data["note"]) == (
        "Dismissed",
        "ana",
        "duplicate booking",
    )
    with pytest.raises(TransitionRefused, match="already in QuickBooks"):
        ledger.dismiss(SCHOOL, "F-2", operator="ana", note="x")
