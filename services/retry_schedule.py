"""RetrySchedule: when each waiting event may be tried again, and which realms are paused.

Memory only (a restart derives due times from the log: attempts and the last update). The push
run receives it from the SyncEngine; nothing here calls QuickBooks or the log. Thread-safe: the
worker runs passes of different schools at once, all on the engine's one schedule.
- due times: backoff with jitter after a failure (`RetryPolicy`), "now" after a recovery;
- realm pauses: after a 429 (the throttle's Retry-After) or while the realm's circuit is open;
- circuit breakers: one per school's realm; consecutive outage calls open it;
- wake-ups: a pass that left fresh events for the realm's rate budget says when to come back.
  The budget counts real (monotonic) time, so a wake-up is kept in it too, and told in the
  ledger clock's time only for the loop's sleep (a test's frozen ledger clock never passes it);
- holds: a realm whose budget had no room for its work, or that is paused, stays with this
  worker for a while (`holds`): the budget and the pause live in this process's memory, and a
  second worker passing the school with a fresh budget of its own would double the realm's
  rate (HTTP 429 from QuickBooks) or call a realm this worker knows is throttled or down.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import structlog

from domain.financial_event import FinancialEvent, Status
from domain.ports import PushOutcome
from domain.sync import CircuitBreaker, RetryPolicy, is_outage

log = structlog.get_logger(__name__)

# a realm whose budget had no room for its work stays with the worker this long after: QBO's
# minute window, which the budget's memory of the realm's requests covers
HOLD_AFTER_SPENT_SECONDS = 60.0


class RetrySchedule:
    """Due times per event and pauses per school's realm (one per engine, memory only)."""

    def __init__(
        self,
        policy: RetryPolicy,
        rng: random.Random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.rng = rng
        self._monotonic = monotonic
        self._due: dict[UUID, tuple[str, datetime]] = {}  # next attempt
        self._paused_until: dict[str, datetime] = {}  # realm pauses (429, open circuit)
        self._breakers: dict[str, CircuitBreaker] = {}
        # come back then (ledger time, monotonic deadline): the rate budget has room again
        self._wake: dict[str, tuple[datetime, float]] = {}
        self._held: dict[str, float] = {}  # keep the school's realm until (monotonic)
        self._lock = threading.RLock()

    # --- due times ----------------------------------------------------------------------------

    def is_due(self, event: FinancialEvent, now: datetime) -> bool:
        """Whether a waiting event may be sent now (pending always; retrying/uncertain on time)."""
        with self._lock:
            if event.status not in (Status.RETRYING, Status.UNCERTAIN):
                return True
            entry = self._due.get(event.id)
            if entry is None:  # after a restart: derived from attempts and the last update
                when = self.policy.next_attempt_at(
                    event.modified_on, min(event.attempts, self.policy.max_attempts), self.rng
                )
                self._due[event.id] = (event.school, when)
                return when <= now
            return entry[1] <= now

    def schedule(self, event: FinancialEvent, failures: int, now: datetime, floor: float) -> None:
        """The next attempt after failures: backoff with jitter, never sooner than floor s."""
        with self._lock:
            delay = max(floor, self.policy.delay(max(1, failures), self.rng))
            self._due[event.id] = (event.school, now + timedelta(seconds=delay))

    def due_now(self, event: FinancialEvent, now: datetime) -> None:
        """Try the event again at once (a recovered `syncing` event)."""
        with self._lock:
            self._due[event.id] = (event.school, now)

    def unschedule(self, event_id: UUID) -> None:
        """The event no longer waits for a retry."""
        with self._lock:
            self._due.pop(event_id, None)

    def forget(self, school: str, keep: Collection[UUID]) -> None:
        """Drop due dates of a school's events that no longer wait."""
        with self._lock:
            for event_id, (owner, _) in list(self._due.items()):
                if owner == school and event_id not in keep:
                    del self._due[event_id]

    def next_due(self, school: str | None = None) -> datetime | None:
        """The earliest time a retrying/uncertain event (or a paused or budget-bound realm)
        becomes due."""
        with self._lock:
            paused = self._paused_until  # an event due inside its realm's pause waits for its end
            times = [
                max(when, paused.get(s, when))
                for s, when in self._due.values()
                if school is None or s == school
            ]
            times.extend(
                when for s, when in self._paused_until.items() if school is None or s == school
            )
            times.extend(
                when for s, (when, _) in self._wake.items() if school is None or s == school
            )
            return min(times) if times else None

    # --- wake-ups (the realm's rate budget) ---------------------------------------------------

    def wake(self, school: str, now: datetime, seconds: float) -> None:
        """The school's pass left fresh events for the rate budget: come back in `seconds`
        (real time; `now` is the ledger clock's, for next_due)."""
        with self._lock:
            deadline = self._monotonic() + seconds
            self._wake[school] = (now + timedelta(seconds=seconds), deadline)
            self._held[school] = self._monotonic() + HOLD_AFTER_SPENT_SECONDS

    def keep_wakes(self, schools: Collection[str]) -> None:
        """Drop the wake-ups of schools that no longer have work (another worker finished it,
        or it was dismissed): a stale one would keep next_due in the past, and the loop
        polling for it."""
        with self._lock:
            for school in [s for s in self._wake if s not in schools]:
                del self._wake[school]

    def waking_later(self, school: str) -> bool:
        """True while the school waits for its realm's budget (a pass now would send nothing
        fresh); a wake-up whose time has come (in real time) is cleared."""
        with self._lock:
            wake = self._wake.get(school)
            if wake is None:
                return False
            if wake[1] > self._monotonic():
                return True
            del self._wake[school]
            return False

    def holds(self, school: str, now: datetime) -> bool:
        """True while the school's realm should stay with this worker: its budget had no room
        for the work within the last minute, or the realm is paused (a 429, an open circuit)."""
        with self._lock:
            if self.still_paused(school, now):
                return True
            until = self._held.get(school)
            if until is None:
                return False
            if until > self._monotonic():
                return True
            del self._held[school]
            return False

    # --- realm pauses -------------------------------------------------------------------------

    def pause(self, school: str, until: datetime) -> None:
        """Call nothing for the school's realm before until."""
        with self._lock:
            self._paused_until[school] = until

    def paused_until(self, school: str) -> datetime | None:
        """When a paused realm may be called again (None: not paused)."""
        with self._lock:
            return self._paused_until.get(school)

    def still_paused(self, school: str, now: datetime) -> bool:
        """True while the realm's pause lasts; a pause that has passed is cleared."""
        with self._lock:
            paused = self._paused_until.get(school)
            if paused is None:
                return False
            if paused > now:
                return True
            del self._paused_until[school]
            return False

    def unavailable(self, school: str, now: datetime) -> str | None:
        """Why QuickBooks cannot be called for the school's realm now (an open circuit after
        outages, or a throttle's pause), or None."""
        with self._lock:
            paused = self._paused_until.get(school)
            if paused is None or paused <= now:
                return None
            until = paused.strftime("%H:%M:%SZ")
            breaker = self._breakers.get(school)
            if breaker is not None and breaker.open_until is not None:
                return f"QuickBooks unreachable: the realm's circuit is open until {until}"
            return f"QuickBooks throttled the realm (HTTP 429): paused until {until}"

    def breaker(self, school: str) -> CircuitBreaker:
        """The school's realm circuit breaker (memory only: a restart starts closed)."""
        with self._lock:
            return self._breakers.setdefault(school, CircuitBreaker())

    def observe_call(self, school: str, outcomes: Sequence[PushOutcome], now: datetime) -> None:
        """One call's answer(s) feed the realm's breaker: all outages count one failure."""
        with self._lock:
            breaker = self.breaker(school)
            if outcomes and all(is_outage(o) for o in outcomes):
                opened = breaker.failed(now)
                if opened is not None:
                    self.pause(school, now + timedelta(seconds=opened))
                    log.warning(
                        "realm_circuit_opened",
                        school=school,
                        seconds=opened,
                        message=outcomes[0].message[:300],
                    )
            elif outcomes:
                if breaker.half_open or breaker.failures:
                    log.info("realm_circuit_closed", school=school)
                breaker.succeeded()
