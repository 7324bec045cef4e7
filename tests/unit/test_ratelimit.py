"""The per-realm rate budget stays under QBO's limits and pauses after a 429."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from adapters.quickbooks.ratelimit import BudgetLimits, RateBudget


class FakeTime:
    """A monotonic clock that only moves when told (sleep advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _budget(time: FakeTime, **kw: Any) -> RateBudget:
    return RateBudget(BudgetLimits(**kw), clock=time, sleep=time.sleep)


def test_at_most_eight_requests_per_second() -> None:
    """The 9th request within one second waits: a margin under QBO's 10 per second (the
    window itself; paced, the token buckets spread requests further)."""
    time = FakeTime()
    budget = _budget(time, paced=False)
    for _ in range(8):
        assert budget.try_acquire() == 0
        budget.release()
    assert budget.try_acquire() > 0
    time.now += 1.0
    assert budget.try_acquire() == 0


def test_per_minute_cap() -> None:
    """Requests over the per-minute budget wait until the oldest leaves the minute."""
    time = FakeTime()
    budget = _budget(time, per_second=1000, per_minute=20)
    for _ in range(20):
        budget.acquire()
        budget.release()
    wait = budget.try_acquire()
    assert 59.0 < wait <= 60.0
    budget.acquire()  # sleeps (fake) until allowed
    assert time.now >= 1060.0


def test_batch_budget_is_separate() -> None:
    """Batch requests have their own per-minute cap; single requests are not held by it."""
    time = FakeTime()
    budget = _budget(time, per_second=1000, batch_per_minute=3, batch_burst=3)
    for _ in range(3):
        assert budget.try_acquire(batch=True) == 0
        budget.release()
    assert budget.try_acquire(batch=True) > 0
    assert budget.try_acquire() == 0


def test_concurrency_cap() -> None:
    """No more requests in flight than the cap; a release frees a slot."""
    time = FakeTime()
    budget = _budget(time, per_second=1000, concurrent=2)
    assert budget.try_acquire() == 0
    assert budget.try_acquire() == 0
    assert budget.try_acquire() > 0
    budget.release()
    assert budget.try_acquire() == 0
    assert budget.in_flight == 2


def test_pause_after_429_holds_the_realm() -> None:
    """pause() stops every request for that long, then lets them through."""
    time = FakeTime()
    budget = _budget(time)
    budget.pause(60.0)
    assert budget.try_acquire() == 60.0
    assert budget.paused_for == 60.0
    budget.acquire()
    assert time.now >= 1060.0


def test_time_scale_shrinks_windows() -> None:
    """With minute_seconds=6, a QBO minute lasts 6 seconds and a second 0.1 s."""
    time = FakeTime()
    budget = _budget(time, per_minute=5, per_second=1000, minute_seconds=6)
    for _ in range(5):
        budget.acquire()
        budget.release()
    assert 0 < budget.try_acquire() <= 6.0


def test_thread_safe_under_contention() -> None:
    """Many threads never take more slots than the per-second budget at one instant."""
    time = FakeTime()
    budget = RateBudget(BudgetLimits(per_second=10, concurrent=100, paced=False), clock=time)
    taken: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            if budget.try_acquire() == 0:
                with lock:
                    taken.append(time.now)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 10


def test_settles_in_tells_when_the_budget_is_as_a_fresh_one() -> None:
    """A fresh budget is settled; a request in flight, the buckets refilling after it and a
    pause each keep it unsettled, for as long as they last."""
    time = FakeTime()
    budget = _budget(time)
    limits = budget.limits
    assert budget.settles_in() == 0
    assert budget.try_acquire() == 0
    assert budget.settles_in() > 0  # in flight
    budget.release()
    assert budget.settles_in() == pytest.approx(1 / limits.single_rate)  # one token to refill
    time.now += 1 / limits.single_rate
    assert budget.settles_in() == 0
    assert budget.try_acquire(batch=True) == 0
    budget.release()
    assert budget.settles_in() == pytest.approx(1 / limits.batch_rate)  # the batch's token
    time.now += 1 / limits.batch_rate
    assert budget.settles_in() == 0
    budget.pause(30)
    assert budget.settles_in() == pytest.approx(30)
