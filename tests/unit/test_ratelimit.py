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


def test_settles_in_tells_when_a_fresh_budget_beside_this_one_stays_in_the_limits() -> None:
    """Settled at once after a few singles (a fresh budget's burst still fits the second);
    not while one is in flight, while more than that started within the last second, for a
    minute after a batch, or during a pause."""
    time = FakeTime()
    budget = _budget(time)
    limits = budget.limits
    room = limits.per_second - limits.single_tokens - limits.batch_burst  # 8 - 4 - 1
    assert budget.settles_in() == 0
    assert budget.try_acquire() == 0
    assert budget.settles_in() > 0  # in flight
    budget.release()
    assert budget.settles_in() == 0  # one single: a fresh burst beside it fits the second
    for _ in range(room):
        time.now += 0.1
        assert budget.try_acquire() == 0
        budget.release()
    # 4 within the second, room for 3: settled when the first leaves the second
    assert budget.settles_in() == pytest.approx(1.0 - 0.1 * room)
    time.now += 1.0 - 0.1 * room
    assert budget.settles_in() == 0
    time.now += 5.0
    assert budget.try_acquire(batch=True) == 0
    budget.release()
    assert budget.settles_in() == pytest.approx(limits.minute_seconds)
    time.now += limits.minute_seconds
    assert budget.settles_in() == 0
    budget.pause(30)
    assert budget.settles_in() == pytest.approx(30)
