"""What one worker round costs and how its passes run (idle cost, passes of realms at once)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from domain.application import FlightLedger
from domain.ports import FixedClock, InvoiceDraft, PushOutcome
from services.push_pass import SyncEngine
from tests.fakes import (
    T0,
    FakeAccountingGateway,
    FakeFinancialEventView,
    FreeLocks,
    ready_school,
    record_flights,
)
from workers.worker_loop import WorkerLoop

SCHOOLS = [f"school-{n}" for n in range(5)]


class CountingView(FakeFinancialEventView):
    """The fake view, counting the calls made to it by name."""

    def __init__(self, ledger: FlightLedger) -> None:
        super().__init__(ledger)
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and name not in ("calls", "ledger"):
            object.__getattribute__(self, "calls")[name] += 1
        return object.__getattribute__(self, name)


def _loop(
    ledger: FlightLedger, gateways: dict[str, FakeAccountingGateway]
) -> tuple[WorkerLoop, CountingView]:
    view = CountingView(ledger)
    engine = SyncEngine(ledger, view, gateways.__getitem__, rng=random.Random(3))
    loop = WorkerLoop(engine, view, FreeLocks(), catch_up=lambda: None, poll_seconds=0.001)
    return loop, view


def _ledger() -> FlightLedger:
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))
    for school in SCHOOLS:
        ready_school(ledger, school)
        record_flights(ledger, 2, school)
    return ledger


def test_an_idle_round_asks_the_view_once_whatever_the_number_of_schools() -> None:
    """Every school synced: a round is one question for the schools with work, none per school."""
    ledger = _ledger()
    gateways = {s: FakeAccountingGateway(ledger=ledger) for s in SCHOOLS}  # a realm each
    loop, view = _loop(ledger, gateways)
    assert loop.run(until_idle=True).idle
    assert [g.invoice_count for g in gateways.values()] == [2] * len(SCHOOLS)
    view.calls.clear()
    passes, worked, contested = loop.round()
    assert (passes, worked, contested) == (0, False, False)
    assert view.calls == Counter({"schools_with_work": 1})


def test_a_round_runs_a_pass_only_for_the_schools_with_work() -> None:
    """One school gets a new flight: the round runs that school's pass and no other."""
    ledger = _ledger()
    gateways = {s: FakeAccountingGateway(ledger=ledger) for s in SCHOOLS}
    loop, _ = _loop(ledger, gateways)
    loop.run(until_idle=True)
    record_flights(ledger, 1, "school-3", start=10)
    ran: list[str] = []
    run_school = loop.engine.run_school
    loop.engine.run_school = lambda school: ran.append(school) or run_school(school)  # type: ignore[method-assign,func-returns-value]
    assert loop.round()[:2] == (1, True)
    assert ran == ["school-3"] and gateways["school-3"].invoice_count == 3


class MeetingGateway(FakeAccountingGateway):
    """A realm whose invoice push waits until the other realm's push is under way too."""

    def __init__(self, ledger: FlightLedger, meeting: threading.Barrier) -> None:
        super().__init__(ledger=ledger)
        self.meeting = meeting

    def push_invoices(self, drafts: Sequence[InvoiceDraft]) -> list[PushOutcome]:
        """Both realms' batches are in flight at once, or this one gives up."""
        self.meeting.wait()
        return super().push_invoices(drafts)


class ThreadLocks(FreeLocks):
    """Always free; two passes at once; remembers which thread took which school."""

    parallel_passes = 2

    def __init__(self) -> None:
        super().__init__()
        self.taken: dict[str, str] = {}

    def try_acquire(self, school: str) -> bool:
        """Owned, by this thread."""
        self.taken[school] = threading.current_thread().name
        return True


def test_passes_of_different_realms_run_at_once() -> None:
    """Two schools' pushes meet in flight (sequential passes could not), on two threads."""
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))
    meeting = threading.Barrier(2, timeout=10)
    gateways = {}
    for school in SCHOOLS[:2]:
        ready_school(ledger, school)
        record_flights(ledger, 3, school)
        gateways[school] = MeetingGateway(ledger, meeting)
    view = FakeFinancialEventView(ledger)
    engine = SyncEngine(ledger, view, gateways.__getitem__, rng=random.Random(3))
    locks = ThreadLocks()
    loop = WorkerLoop(engine, view, locks, catch_up=lambda: None, poll_seconds=0.001)
    assert loop.passes_at_once == 2
    assert loop.round()[:2] == (2, True)
    assert not meeting.broken
    assert [g.invoice_count for g in gateways.values()] == [3, 3]
    assert len(set(locks.taken.values())) == 2  # each pass on a thread of its own
    assert loop.run(until_idle=True).healthy


def test_a_busy_realm_stays_with_the_worker_until_its_budget_settles() -> None:
    """After a pass the school is kept while the engine says its realm is busy here
    (keeps_realm), handed back at the first round after it no longer is, and every kept
    school is handed back when the worker stops."""
    ledger = _ledger()
    gateways = {s: FakeAccountingGateway(ledger=ledger) for s in SCHOOLS}
    loop, _ = _loop(ledger, gateways)
    locks = loop.locks
    assert isinstance(locks, FreeLocks)
    busy = {"school-1"}
    loop.engine.keeps_realm = lambda school: school in busy  # type: ignore[method-assign]
    loop.round()
    assert locks.kept == {"school-1"}
    busy.clear()
    loop.round()  # nothing to do, but the settled realm goes back
    assert locks.kept == set()
    busy.add("school-2")
    record_flights(ledger, 1, "school-2", start=20)
    summary = loop.run(until_idle=True)
    assert summary.idle and locks.kept == set()
