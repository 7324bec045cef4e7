"""Fresh invoices go by what the realm's rate budget allows now: singles, a batch, or later."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta

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
# a slow realm, so that the test's frozen clock never meets a wait short enough to sleep out:
# 3 requests a second saved up, 36 singles and 4 batches a minute, one batch saved up
LIMITS = BudgetLimits(per_second=3, per_minute=40, batch_per_minute=4, batch_burst=1)


class BudgetedFake(FakeAccountingGateway):
    """The fake QBO behind a rate budget it tells about; a call the budget refuses fails."""

    def __init__(self, ledger: FlightLedger, time: FakeTime) -> None:
        super().__init__(ledger=ledger)
        self.budget = RateBudget(LIMITS, clock=time, sleep=time.sleep)

    def budget_room(self, within: float = 0.0) -> int:
        """What the budget lets start now (or within `within` seconds)."""
        return self.budget.available(within)

    def budget_wait(self, *, batch: bool) -> float:
        """Seconds until the budget lets a request start."""
        return self.budget.wait_time(batch=batch)

    def push_invoice(self, draft: InvoiceDraft) -> PushOutcome:
        """A single create, within the budget."""
        assert self.budget.try_acquire() == 0, "a single create the budget had no room for"
        outcome = super().push_invoice(draft)
        self.budget.release()
        return outcome

    def push_invoices(self, drafts: Sequence[InvoiceDraft]) -> list[PushOutcome]:
        """A batch, within the budget."""
        assert self.budget.try_acquire(batch=True) == 0, "a batch the budget had no room for"
        outcomes = super().push_invoices(drafts)
        self.budget.release()
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


def test_a_small_backlog_goes_as_single_creates_one_after_another() -> None:
    """3 invoices and room for 3 requests: 3 single creates with their requestids, no batch,
    sent one after another (the gateway's client is not shared between threads)."""
    ledger, _, _, gateway, engine = _setup(3)
    report = engine.run_pass(SCHOOL)
    assert gateway.calls == [("invoice", 1)] * 3 and report.calls == 3
    assert _statuses(ledger) == {"synced": 3}
    assert all(i.request_id for i in gateway.invoices.values())  # replay-safe
    assert not any(e.batched for e in ledger.iter_financial_events(SCHOOL))


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
    assert engine.retries.waking_later(SCHOOL, clock.now())
    for _ in range(40):  # the budget refills; each pass sends what it allows
        clock.advance(1)
        time.now += 1.0
        engine.run_pass(SCHOOL)
        if _statuses(ledger) == {"synced": 40}:
            break
    assert _statuses(ledger) == {"synced": 40} and gateway.invoice_count == 40


def test_batches_are_paced_over_the_minute_not_spent_at_once() -> None:
    """The default budget lets 3 batches go at once, then one every 60/38 s: never a minute's
    wait for the next batch after a burst."""
    time = FakeTime()
    budget = RateBudget(BudgetLimits(), clock=time, sleep=time.sleep)
    for _ in range(3):
        assert budget.try_acquire(batch=True) == 0
        budget.release()
    wait = budget.wait_time(batch=True)
    assert 1.5 < wait < 1.6
    time.now += wait
    assert budget.try_acquire(batch=True) == 0


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
