"""A per-realm request budget that stays under QBO's limits and pauses a realm after a 429.

QBO (per realm): 10 requests/second, 500/minute, 40 batch requests/minute, 10 concurrent. We
keep a margin: by default at most 8 per second, 480 per minute, 38 batch per minute and 8 in
flight. ``minute_seconds`` scales the windows (one QBO minute lasts that many real seconds).

Paced (the default): the minute's budget is spread over the minute, so that a burst never
spends it in seconds and leaves the rest of the work waiting for the window to slide. Two token
buckets: batches (at most batch_burst saved up) and other requests (at most single_burst saved
up). Their rates leave room for what the buckets hold, so that the tokens of any minute (a full
bucket plus a minute's refill) fit the minute's windows: batches refill at batch_per_minute -
batch_burst a minute, other requests at per_minute - batch_per_minute - single_burst. (At the
windows' full rates with 3 batches and 8 singles saved up, a backlog met the sliding minute at
the end of every minute: batches stopped for about 4 s, then the saved-up burst went again.)
A small single_burst also spreads singles over the second instead of spending the second's
window at its start (where a batch then waits for the second to slide); 4 leaves a pass that
comes back every half second its whole share.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class BudgetLimits:
    """The budget of one realm, in QBO units."""

    per_second: int = 8  # QBO allows 10: arrival jitter needs the margin
    per_minute: int = 480
    batch_per_minute: int = 38
    concurrent: int = 8
    minute_seconds: float = 60.0
    paced: bool = True  # spread the minute's budget over the minute (token buckets)
    batch_burst: int = 1  # batches saved up while none is needed
    single_burst: int = 4  # other requests saved up while none is needed (at most per_second)

    @property
    def single_rate(self) -> float:
        """Paced non-batch requests per real second: the minute's budget less the batches'
        and less what the bucket holds (a full bucket plus a minute's refill fit the minute)."""
        share = self.per_minute - self.batch_per_minute - self.single_tokens if self.paced else 0
        return max(0, share) / self.minute_seconds

    @property
    def single_tokens(self) -> int:
        """Other requests the bucket holds at most."""
        return max(1, min(self.single_burst, self.per_second))

    @property
    def batch_rate(self) -> float:
        """Paced batch requests per real second (less what the bucket holds, likewise)."""
        share = self.batch_per_minute - self.batch_burst if self.paced else 0
        return max(0, share) / self.minute_seconds

    @property
    def second(self) -> float:
        """One QBO second in real seconds."""
        return self.minute_seconds / 60.0


class RateBudget:
    """Thread-safe sliding-window budget for one realm, with an injectable clock and sleep."""

    def __init__(
        self,
        limits: BudgetLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.limits = limits or BudgetLimits()
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._recent: deque[float] = deque()  # start times within the last minute
        self._batches: deque[float] = deque()
        self._in_flight = 0
        self._paused_until = 0.0
        # token buckets of the pacing: (tokens, when last filled)
        self._single_tokens = float(self.limits.single_tokens)
        self._batch_tokens = float(self.limits.batch_burst)
        self._filled = clock()

    def _fill(self, now: float) -> None:
        elapsed = max(0.0, now - self._filled)
        self._filled = now
        lim = self.limits
        self._single_tokens = min(
            float(lim.single_tokens), self._single_tokens + elapsed * lim.single_rate
        )
        self._batch_tokens = min(
            float(lim.batch_burst), self._batch_tokens + elapsed * lim.batch_rate
        )

    def _trim(self, now: float) -> None:
        minute = self.limits.minute_seconds
        while self._recent and self._recent[0] <= now - minute:
            self._recent.popleft()
        while self._batches and self._batches[0] <= now - minute:
            self._batches.popleft()

    def wait_time(self, *, batch: bool = False) -> float:
        """Seconds until a request could start (0 when it could start now)."""
        with self._cond:
            return self._wait_locked(self._clock(), batch)

    def _wait_locked(self, now: float, batch: bool) -> float:
        self._trim(now)
        lim = self.limits
        waits = [self._paused_until - now]
        if len(self._recent) >= lim.per_minute:
            waits.append(self._recent[0] + lim.minute_seconds - now)
        in_last_second = [t for t in self._recent if t > now - lim.second]
        if len(in_last_second) >= lim.per_second:
            waits.append(in_last_second[0] + lim.second - now)
        if batch and len(self._batches) >= lim.batch_per_minute:
            waits.append(self._batches[0] + lim.minute_seconds - now)
        if lim.paced:
            self._fill(now)
            tokens, rate = (
                (self._batch_tokens, lim.batch_rate)
                if batch
                else (self._single_tokens, lim.single_rate)
            )
            if tokens < 1 - 1e-9 and rate > 0:  # (float error: a refilled token is whole)
                waits.append((1 - tokens) / rate)
        wait = max(waits)
        if wait <= 0 and self._in_flight >= lim.concurrent:
            return lim.second / 10  # a slot frees when a request ends: check again soon
        return max(0.0, wait)

    def try_acquire(self, *, batch: bool = False) -> float:
        """Take a slot now and return 0, or take nothing and return the seconds to wait."""
        with self._cond:
            now = self._clock()
            wait = self._wait_locked(now, batch)
            if wait > 0:
                return wait
            self._recent.append(now)
            if batch:
                self._batches.append(now)
            if self.limits.paced:
                if batch:
                    self._batch_tokens -= 1
                elif self.limits.single_rate > 0:
                    self._single_tokens -= 1
            self._in_flight += 1
            return 0.0

    def settles_in(self) -> float:
        """Seconds until another process may call the realm on a fresh budget of its own,
        beside what this one sent, without going over the limits (0: now). Until then the
        worker keeps the school (RetrySchedule, SyncEngine.keeps_realm):
        - a pause (after a 429) lasts, or a request is in flight;
        - a batch started within the minute (a fresh budget would not count it);
        - more requests started within the last second than a fresh budget's burst leaves
          room for (per_second less what its buckets hold).
        A realm that is called more than one budget allows says so otherwise: the pass finds
        no room and the schedule keeps the school for a minute (RetrySchedule.wake)."""
        with self._cond:
            now = self._clock()
            self._trim(now)
            lim = self.limits
            waits = [self._paused_until - now]
            if self._in_flight:
                waits.append(lim.second)
            if self._batches:
                waits.append(self._batches[-1] + lim.minute_seconds - now)
            room = max(0, lim.per_second - lim.single_tokens - lim.batch_burst)
            last_second = [t for t in self._recent if t > now - lim.second]
            if len(last_second) > room:  # wait until only `room` of them are within a second
                waits.append(last_second[len(last_second) - room - 1] + lim.second - now)
            return max(0.0, *waits)

    def available(self, within: float = 0.0) -> int:
        """How many non-batch requests could start now (plus, paced, those the next `within`
        seconds refill), one after another, without waiting."""
        with self._cond:
            now = self._clock()
            lim = self.limits
            later = int(within * lim.single_rate) if lim.paced and within > 0 else 0
            if self._wait_locked(now, False) > 0:
                return later
            in_last_second = sum(1 for t in self._recent if t > now - lim.second)
            room = [
                lim.per_minute - len(self._recent),
                lim.per_second - in_last_second,
                lim.concurrent - self._in_flight,
            ]
            if lim.paced and lim.single_rate > 0:
                room.append(int(self._single_tokens + 1e-9))
            return max(0, min(room)) + later

    def acquire(self, *, batch: bool = False) -> None:
        """Block until a slot is free, then take it."""
        while True:
            wait = self.try_acquire(batch=batch)
            if wait <= 0:
                return
            if self._sleep is not None:
                self._sleep(wait)
            else:
                with self._cond:
                    self._cond.wait(timeout=wait)

    def release(self) -> None:
        """End a request taken with acquire/try_acquire."""
        with self._cond:
            self._in_flight = max(0, self._in_flight - 1)
            self._cond.notify_all()

    @contextmanager
    def slot(self, *, batch: bool = False) -> Iterator[None]:
        """acquire ... release."""
        self.acquire(batch=batch)
        try:
            yield
        finally:
            self.release()

    def pause(self, seconds: float) -> None:
        """Stop the realm for this many real seconds (after a 429)."""
        with self._cond:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    @property
    def paused_for(self) -> float:
        """Seconds left of a pause (0 when none)."""
        with self._cond:
            return max(0.0, self._paused_until - self._clock())

    @property
    def in_flight(self) -> int:
        """Requests currently started and not released."""
        with self._cond:
            return self._in_flight


class RateBudgets:
    """One RateBudget per realm, created on first use; thread-safe."""

    def __init__(self, limits: BudgetLimits | None = None) -> None:
        self.limits = limits or BudgetLimits()
        self._lock = threading.Lock()
        self._budgets: dict[str, RateBudget] = {}

    def for_realm(self, realm: str) -> RateBudget:
        """The realm's budget."""
        with self._lock:
            budget = self._budgets.get(realm)
            if budget is None:
                budget = self._budgets[realm] = RateBudget(self.limits)
            return budget
