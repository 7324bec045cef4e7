"""Fresh invoices go by what the realm's rate budget allows now: singles, a batch, or later."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest

from adapters.quickbooks.ratelimit import BudgetLimits, RateBudget
from domain.application import FlightLedger
from domain.ports import FixedClock, InvoiceDraft, PushOutcome
from services.push_pass import SyncEngine
from tests.fakes import T0, FakeAccountingGateway, FakeFinancialEventView, ready_school
from tests.fakes import record_flights as record
from tests.unit.test_ratelimit import FakeTime

pytestmark = pytest.mark.timeout(60)
SCHOOL = "default"
# a slow realm, so that the test's frozen clock never meets a wait short enough to matter:
# 3 requests a second saved up, 33 singles and 3 batches a minute paced, one batch saved up
LIMITS = BudgetLimits(per_second=3, per_minute=40, batch_per_minute=4, batch_burst=1)


class BudgetedFake(FakeAccountingGateway):
    """The fake QBO behind a rate budget it tells about; a call the budget refuses fails.
    Calls may come from several threads at once: the fake's own state is kept under a lock,
    and the most calls in flight at once is counted."""

    def __init__(self, ledger: FlightLedger, time: FakeTime) -> None:
        super().__init__(ledger=ledger)
        self.budget = RateBudget(LIMITS, clock=time, sleep=time.sleep)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.meet: threading.Barrier | None = None  # calls wait here for each other

    def budget_room(self, within: float = 0.0) -> int:
        """What the budget lets start now (or within `within` seconds)."""
        return self.budget.available(within)

    def budget_wait(self, *, batch: bool) -> float:
        """Seconds until the budget lets a request start."""
        return self.budget.wait_time(batch=batch)

    def budget_settles_in(self) -> float:
        """Seconds until another worker may call the realm on a fresh budget."""
        return self.budget.settles_in()

    def _call(self, batch: bool, answer: Callable[[], Any]) -> Any:
        assert self.budget.try_acquire(batch=batch) == 0, "a call the budget had no room for"
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.meet is not None:
                self.meet.wait()
            with self.lock:
                return answer()
        finally:
            with self.lock:
                self.in_flight -= 1
            self.budget.release()

    def push_invoice(self, draft: InvoiceDraft) -> PushOutcome:
        """A single create, within the budget."""
        outcome: PushOutcome = self._call(
            False, lambda: super(BudgetedFake, self).push_invoice(draft)
        )
        return outcome

    def push_invoices(self, drafts: Sequence[InvoiceDraft]) -> list[PushOutcome]:
        """A batch, within the budget."""
        create = super().push_invoices
        outcomes: list[PushOutcome] = self._call(True, lambda: create(drafts))
        return outcomes


def _setup(flights: int) -> tuple[FlightLedger, FixedClock, FakeTime, BudgetedFake, SyncEngine]:
    clock = FixedClock(T0)
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    ready_school(ledger, SCHOOL)
    record(ledger, flights, SCHOOL)
    time = FakeTime()
    gateway = BudgetedFake(ledger, time)
    view = FakeFinancialEventView(ledger)
    engine = SyncEngine(ledger, view, lambda s: gateway, rng=random.Random(3))
    return ledger, clock, time, gateway, engine


def _statuses(ledger: FlightLedger) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in ledger.iter_financial_events(SCHOOL):
        counts[event.status.value] = counts.get(event.status.value, 0) + 1
    return counts


def test_a_small_backlog_goes_as_single_creates_all_in_flight_at_once() -> None:
    """3 invoices and room for 3 requests: 3 single creates with their requestids, no batch,
    all in flight at once (each waits for the other two before it is answered: sent one after
    another, the first would wait for ever and the barrier's timeout would fail the pass)."""
    ledger, _, _, gateway, engine = _setup(3)
    gateway.meet = threading.Barrier(3, timeout=30)
    report = engine.run_pass(SCHOOL)
    assert gateway.calls == [("invoice", 1)] * 3 and report.calls == 3
    assert gateway.most_in_flight == 3
    assert _statuses(ledger) == {"synced": 3}
    assert all(i.request_id for i in gateway.invoices.values())  # replay-safe
    assert len({i.request_id for i in gateway.invoices.values()}) == 3
    assert not any(e.batched for e in ledger.iter_financial_events(SCHOOL))


def test_a_batch_and_singles_go_at_once_never_more_than_the_budget_allows() -> None:
    """40 invoices: the batch and the singles beside it are in flight together, never more
    than the realm's concurrency; the pass does not wait for the budget: it says when to come
    back, and each later pass sends one wave."""
    _, _, time, gateway, engine = _setup(40)
    gateway.meet = threading.Barrier(3, timeout=30)
    engine.run_pass(SCHOOL)
    assert gateway.most_in_flight == 3  # the batch and 2 singles
    assert gateway.most_in_flight <= LIMITS.concurrent
    assert time.slept == []  # no wait inside the pass
    assert engine.retries.waking_later(SCHOOL)


def test_a_backlog_beyond_what_singles_can_send_goes_in_a_batch() -> None:
    """10 invoices and room for 3 singles: one batch takes them all (batches of 30)."""
    ledger, _, _, gateway, engine = _setup(10)
    engine.run_pass(SCHOOL)
    assert gateway.calls == [("batch", 10)]
    assert _statuses(ledger) == {"synced": 10}


def test_what_the_budget_cannot_take_now_waits_and_the_pass_says_until_when() -> None:
    """40 invoices: a batch of 30 and 2 singles (the second's 3 requests); the other 8 stay
    pending, the school waits for its budget, and a later pass sends them."""
    ledger, clock, time, gateway, engine = _setup(40)
    engine.run_pass(SCHOOL)
    assert sorted(gateway.calls) == [("batch", 30), ("invoice", 1), ("invoice", 1)]
    assert _statuses(ledger) == {"synced": 32, "pending": 8}
    due = engine.next_due(SCHOOL)
    assert due is not None and T0 < due <= T0 + timedelta(seconds=1)
    assert engine.retries.waking_later(SCHOOL)
    for _ in range(40):  # the budget refills; each pass sends what it allows
        clock.advance(1)
        time.now += 1.0
        engine.run_pass(SCHOOL)
        if _statuses(ledger) == {"synced": 40}:
            break
    assert _statuses(ledger) == {"synced": 40} and gateway.invoice_count == 40


def test_batches_are_paced_over_the_minute_not_spent_at_once() -> None:
    """The default budget lets one batch go at once, then one every 60/37 s: never a minute's
    wait for the next batch after a burst."""
    time = FakeTime()
    budget = RateBudget(BudgetLimits(), clock=time, sleep=time.sleep)
    assert budget.try_acquire(batch=True) == 0
    budget.release()
    wait = budget.wait_time(batch=True)
    assert 1.6 < wait < 1.65
    time.now += wait
    assert budget.try_acquire(batch=True) == 0


def test_a_backlog_using_every_token_never_meets_the_minute_windows() -> None:
    """Singles and batches taken the moment the default budget allows, for three minutes:
    no wait is longer than a token's (a batch's 60/37 s) or the second's window, never the
    sliding minute's (the buckets' refill plus what they hold fits the windows), and each
    minute holds about the paced rates' requests. Refilling at the windows' full rates (3
    batches saved up), the window stopped batches for about 4 s at the end of every minute."""
    time = FakeTime()
    limits = BudgetLimits()
    budget = RateBudget(limits, clock=time, sleep=time.sleep)
    start = time.now
    singles: list[float] = []
    batches: list[float] = []
    longest = {False: 0.0, True: 0.0}
    while time.now < start + 180:
        for batch, taken in ((True, batches), (False, singles)):
            wait = budget.try_acquire(batch=batch)
            if wait == 0:
                budget.release()
                taken.append(time.now)
            else:
                longest[batch] = max(longest[batch], wait)
        time.now += 0.01
    assert longest[False] <= limits.second
    assert longest[True] < 1 / limits.batch_rate + 0.011
    for minute in range(3):
        begin = start + 60 * minute
        in_minute = [t for t in singles + batches if begin <= t < begin + 60]
        assert len([t for t in batches if begin <= t < begin + 60]) >= limits.batch_per_minute - 5
        # the minute's tokens (the second's window of 8 binds a little before them)
        assert len(in_minute) >= limits.per_minute - 30


def test_singles_are_paced_so_batches_keep_their_share_of_the_minute() -> None:
    """Singles taken greedily for a minute stay under the minute's budget less the batches'
    share, and no single waits longer than a second: the minute is spread, not spent."""
    time = FakeTime()
    limits = BudgetLimits()
    budget = RateBudget(limits, clock=time, sleep=time.sleep)
    start, taken = time.now, 0
    while time.now < start + 60:
        budget.acquire()
        budget.release()
        taken += 1
    assert taken <= limits.per_minute - limits.batch_per_minute + limits.per_second
    assert max(time.slept) <= 1.0
    assert budget.wait_time(batch=True) < 1.0  # the batches keep their share of the minute
