"""The worker process loop: catch the view up, take ownership, recover, push, repeat.

A round asks the view once for the schools with unsettled events and runs their passes, those
of different schools at once on a bounded thread pool (as many as the ownership mechanism
allows: PostgreSQL advisory locks on one connection per thread; SQLite one at a time). Each
pass runs under its school's lock, taken by the thread that runs it, so a school is never
pushed twice at once, by this worker or another. After the pass the lock is released, unless
the school's realm is busy in this worker (SyncEngine.keeps_realm: its rate budget had no room
for the work, sent a batch or many requests just now, or the realm is paused after a 429 or an
outage): then the worker keeps the school until that is over (checked every round), so one
realm's calls follow one budget, not one per worker. A quiet school is released after its pass
as before, and goes to whichever worker comes first.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog
from eventsourcing.persistence import PersistenceError

from adapters.heartbeat import HeartbeatStore
from domain.financial_event import Status
from domain.ports import RealmLocks
from projections.view import FinancialEventView, Listener
from services.push_pass import PassReport, SyncEngine

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.5
# listening for NOTIFY (PostgreSQL): an idle worker looks anyway this often (a missed NOTIFY)
IDLE_SECONDS = 10.0
WAIT_SLICE_SECONDS = 1.0  # a wait for NOTIFY is cut in slices: stop is seen within one
MAX_DRAINED_NOTIFIES = 10_000  # NOTIFYs already queued are one wake, not one round each
HEARTBEAT_SECONDS = 10.0
UNHEALTHY_BACKOFF_MAX = 60.0  # seconds between rounds while every pass crashes
UNHEALTHY_ROUNDS_UNTIL_IDLE = 3  # --until-idle gives up (exit 1) after this many in a row
# --until-idle gives up (exit 1) once QuickBooks was unavailable (open circuit, throttle) for
# every school with work this long in a row; due retries sooner than that are waited for
UNAVAILABLE_SECONDS_UNTIL_IDLE = 120.0
SETTLED = frozenset(
    s.value for s in (Status.SYNCED, Status.ACTION_REQUIRED, Status.FAILED, Status.DISMISSED)
)
UNSETTLED = (Status.PENDING, Status.RETRYING, Status.UNCERTAIN, Status.SYNCING)
SUMMARY_STATUSES = (
    Status.SYNCED,
    Status.ACTION_REQUIRED,
    Status.FAILED,
    Status.RETRYING,
    Status.UNCERTAIN,
    Status.PENDING,
)


@dataclass
class WorkerSummary:
    """What the view holds when the worker stops, and how long it ran."""

    counts: dict[str, int] = field(default_factory=dict)
    passes: int = 0
    seconds: float = 0.0
    idle: bool = False
    healthy: bool = True  # False: the last rounds all crashed (see error)
    error: str = ""
    # with until_idle and not idle: why it stopped ("max_seconds", "unavailable", "signal")
    # and, per school still with work, what it waits for
    stopped: str = ""
    left: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The CLI summary: every status count, passes and seconds."""
        result: dict[str, Any] = {s.value: self.counts.get(s.value, 0) for s in SUMMARY_STATUSES}
        result["passes"] = self.passes
        result["seconds"] = round(self.seconds, 3)
        return result


@dataclass
class _PassResult:
    """What became of one school in a round."""

    school: str
    state: str  # "ran" | "crashed" | "contested" | "stopped"
    report: PassReport | None = None
    error: str = ""
    lock_error: Exception | None = None  # the ownership check itself failed


def default_worker_id() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerLoop:
    """Runs passes over every school with work, each under the school's ownership lock."""

    def __init__(
        self,
        engine: SyncEngine,
        view: FinancialEventView,
        locks: RealmLocks,
        *,
        catch_up: Callable[[], object],
        heartbeat: HeartbeatStore | None = None,
        worker_id: str | None = None,
        poll_seconds: float = POLL_SECONDS,
        rng: random.Random | None = None,
        listen: Callable[[], Listener] | None = None,
        passes_at_once: int | None = None,
    ) -> None:
        self.engine = engine
        # passes of different schools at once: what the ownership mechanism allows by default
        self.passes_at_once = max(1, passes_at_once or locks.parallel_passes)
        self._pool: ThreadPoolExecutor | None = None
        self._all_crashed = False
        self.view = view
        self.locks = locks
        self.catch_up = catch_up
        self.heartbeat = heartbeat
        self.worker_id = worker_id or default_worker_id()
        self.poll_seconds = poll_seconds
        self.rng = rng or random.Random()
        self.listen = listen
        self._listener: Listener | None = None
        self._last_beat = float("-inf")
        self.unhealthy_rounds = 0  # rounds in a row in which every pass (or the catch-up) crashed
        self.last_error = ""
        self.unavailable_seconds = UNAVAILABLE_SECONDS_UNTIL_IDLE
        self._with_work: list[str] = []  # the last round's schools with unsettled events
        self._settled = False  # the last round settled an event (synced, action required...)

    def _sleep(self, seconds: float, stop: threading.Event) -> None:
        """Wait for new events in the log (LISTEN/NOTIFY or polling), at most `seconds`.

        The wait is cut in slices so that stop is seen; NOTIFYs already queued (the worker's
        own writes, a burst of flights) are drained: they wake the worker once.
        """
        if self.listen is None:
            stop.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        try:
            if self._listener is None:
                self._listener = self.listen()
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if self._listener.wait(min(left, WAIT_SLICE_SECONDS)):
                    for _ in range(MAX_DRAINED_NOTIFIES):
                        if not self._listener.wait(0):
                            break
                    return
        except PersistenceError as exc:  # the listening connection died: poll, reopen later
            log.warning("worker_listen_failed", error=str(exc))
            self._close_listener()
            stop.wait(min(max(0.0, deadline - time.monotonic()), self.poll_seconds))

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.close()
            except Exception as exc:  # closing a dead connection must not stop the worker
                log.debug("worker_listener_close_failed", error=str(exc))

    def _beat(self, force: bool = False) -> None:
        if self.heartbeat is None:
            return
        if not force and time.monotonic() - self._last_beat < HEARTBEAT_SECONDS:
            return
        detail = f"unhealthy: {self.last_error}"[:500] if self.unhealthy_rounds else "healthy"
        try:
            self.heartbeat.beat(self.worker_id, self.engine.ledger.clock.now(), detail)
            self._last_beat = time.monotonic()
        except Exception as exc:  # a heartbeat must never stop the worker
            log.warning("heartbeat_failed", error=str(exc))

    def round(self) -> tuple[int, bool, bool]:
        """One scan of every school: (passes run, any work done, any school owned elsewhere)."""
        self._hand_back_settled()
        self.catch_up()
        self._with_work = list(self.view.schools_with_work())  # one query, whatever the count
        retries = self.engine.retries
        retries.keep_wakes(self._with_work)
        schools = [
            school
            for school in self._with_work
            if not retries.waking_later(school)  # its realm's budget is spent
        ]
        self.rng.shuffle(schools)  # several workers spread over the schools
        results = self._run_passes(schools)
        lock_errors = [r.lock_error for r in results if r.lock_error is not None]
        if lock_errors:
            raise lock_errors[0]
        ran = [r for r in results if r.state == "ran"]
        crashed = [r for r in results if r.state == "crashed"]
        if crashed:
            self.last_error = crashed[-1].error
        worked = any(r.report is not None and r.report.worked for r in ran)
        self._settled = any(
            r.report is not None and any(s in SETTLED for s in r.report.outcomes) for r in ran
        )
        contested = any(r.state == "contested" for r in results)
        self._all_crashed = bool(crashed) and not ran
        return len(ran), worked, contested

    def _run_passes(self, schools: Sequence[str]) -> list[_PassResult]:
        """Each school's pass, several at once when allowed; every one has ended on return."""
        if self.passes_at_once <= 1 or len(schools) <= 1:
            return [self._one_pass(school) for school in schools]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.passes_at_once, thread_name_prefix="pass")
        return list(self._pool.map(self._one_pass, schools))

    def _one_pass(self, school: str) -> _PassResult:
        """Recover and push one school under its lock (taken and released in this thread)."""
        if self.engine.should_stop():
            # SIGTERM / --max-seconds: the other schools wait for the next worker
            return _PassResult(school, "stopped")
        try:
            owned = self.locks.try_acquire(school)
        except Exception as exc:  # the ownership check failed: the round fails with it
            return _PassResult(school, "crashed", error=str(exc), lock_error=exc)
        if not owned:  # another worker runs this school's pass now
            log.debug("realm_lock_refused", school=school)
            return _PassResult(school, "contested")
        try:
            return _PassResult(school, "ran", report=self.engine.run_school(school))
        except Exception as exc:  # one school's failure must not stop the others
            error = f"{type(exc).__name__}: {exc}"
            log.error("sync_pass_crashed", school=school, error=error)
            return _PassResult(school, "crashed", error=error)
        finally:
            self._keep_or_release(school)

    def _keeps(self, school: str) -> bool:
        try:
            return self.engine.keeps_realm(school)
        except Exception as exc:  # when in doubt, let other workers have it
            log.warning("realm_keep_check_failed", school=school, error=str(exc))
            return False

    def _keep_or_release(self, school: str) -> None:
        """After the school's pass: keep its lock while its realm is busy here, else release."""
        if not self.engine.should_stop() and self._keeps(school):
            self.locks.hold(school)
            log.debug("realm_lock_kept", school=school)
        else:
            self._release(school)

    def _hand_back_settled(self, *, every: bool = False) -> None:
        """Release the schools kept between passes whose realm is no longer busy here (all of
        them with `every`: the worker stops)."""
        for school in list(self.locks.kept):
            if every or not self._keeps(school):
                self._release(school)
                log.debug("realm_lock_handed_back", school=school)

    # --- --until-idle: what is left, and why -------------------------------------------------

    def _all_unavailable(self) -> bool:
        """Every school with work waits for QuickBooks (an open circuit or a throttle)."""
        now = self.engine.now()
        retries = self.engine.retries
        return bool(self._with_work) and all(
            retries.unavailable(school, now) for school in self._with_work
        )

    def _work_left(self) -> dict[str, str]:
        """Per school still with unsettled events: how many, and what they wait for."""
        now = self.engine.now()
        left: dict[str, str] = {}
        for school in self.view.schools_with_work():
            counts = self.view.counts(school)
            waiting = ", ".join(
                f"{s.value} {counts[s.value]}" for s in UNSETTLED if counts.get(s.value)
            )
            why = self.engine.retries.unavailable(school, now) or "still being worked on"
            last = self.view.list(
                school, statuses=(Status.RETRYING.value, Status.UNCERTAIN.value), limit=1
            )
            if last and last[0].reason:
                code = f" [{last[0].reason_code}]" if last[0].reason_code else ""
                why += f"; last answer: {last[0].reason}{code}"
            left[school] = f"{waiting or 'waiting'} ({why})"
        return left

    def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _release(self, school: str) -> None:
        try:
            self.locks.release(school)
        except Exception as exc:  # the database went away: the lock goes with the connection
            log.warning("realm_lock_release_failed", school=school, error=str(exc))

    def _guarded_round(self) -> tuple[int, bool, bool]:
        """round(), and whether the worker is healthy: a crash of every pass is unhealthy."""
        self._all_crashed = False
        try:
            result = self.round()
        except Exception as exc:  # the log or the view cannot be read at all
            self._all_crashed = True
            self.last_error = f"{type(exc).__name__}: {exc}"
            result = (0, False, False)
        if self._all_crashed:
            self.unhealthy_rounds += 1
            log.error(
                "worker_round_failed",
                error=self.last_error,
                rounds=self.unhealthy_rounds,
                detail="every pass crashed; backing off",
            )
            self._beat(force=True)
        elif self.unhealthy_rounds:
            log.info("worker_recovered", after_rounds=self.unhealthy_rounds)
            self.unhealthy_rounds = 0
            self._beat(force=True)
        return result

    def run(
        self,
        *,
        until_idle: bool = False,
        max_seconds: float | None = None,
        stop: threading.Event | None = None,
    ) -> WorkerSummary:
        """Loop until stopped, out of time, or (with until_idle) nothing is left to do."""
        stop = stop or threading.Event()
        started = time.monotonic()
        deadline = None if max_seconds is None else started + max_seconds
        summary = WorkerSummary()

        def should_stop() -> bool:  # checked between calls inside a pass, too
            return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

        self.engine.should_stop = should_stop
        unavailable_since: float | None = None  # since when QuickBooks is out for all with work
        self._beat(force=True)
        while not stop.is_set():
            passes, worked, contested = self._guarded_round()
            summary.passes += passes
            self._beat()
            elapsed = time.monotonic() - started
            if max_seconds is not None and elapsed >= max_seconds:
                summary.stopped = "max_seconds"
                break
            if self.unhealthy_rounds:
                if until_idle and self.unhealthy_rounds >= UNHEALTHY_ROUNDS_UNTIL_IDLE:
                    break
                wait = min(UNHEALTHY_BACKOFF_MAX, self.poll_seconds * 2**self.unhealthy_rounds)
                if max_seconds is not None:
                    wait = min(wait, max(0.0, max_seconds - elapsed))
                stop.wait(wait)
                continue
            if worked:
                continue
            due = self.engine.next_due()
            if until_idle and due is None and not contested:
                summary.idle = True
                break
            if until_idle:  # due retries are waited for, an unavailable QuickBooks within a bound
                if self._settled or not self._all_unavailable():
                    unavailable_since = None
                elif unavailable_since is None:
                    unavailable_since = time.monotonic()
                elif time.monotonic() - unavailable_since >= self.unavailable_seconds:
                    summary.stopped = "unavailable"
                    break
            wait = self.poll_seconds
            if self.listen is not None and not contested and not until_idle:
                wait = max(wait, IDLE_SECONDS)  # NOTIFY wakes the worker for new events
            if due is not None:
                until_due = (due - self.engine.ledger.clock.now()).total_seconds()
                wait = max(0.01, min(wait if not until_idle else until_due, until_due, 5.0))
            if max_seconds is not None:
                wait = min(wait, max(0.0, max_seconds - elapsed))
            self._sleep(wait, stop)
        self.engine.should_stop = lambda: False
        self._close_pool()
        self._hand_back_settled(every=True)
        self._close_listener()
        try:
            self.catch_up()
            for school in self.view.schools():
                for status, n in self.view.counts(school).items():
                    summary.counts[status] = summary.counts.get(status, 0) + n
            if until_idle and not summary.idle and not self.unhealthy_rounds:
                summary.left = self._work_left()
                summary.stopped = summary.stopped or ("signal" if stop.is_set() else "")
        except Exception as exc:  # nothing to count from: the summary says so
            self.unhealthy_rounds = max(1, self.unhealthy_rounds)
            self.last_error = f"{type(exc).__name__}: {exc}"
        self._beat(force=True)
        summary.healthy = self.unhealthy_rounds == 0
        summary.error = "" if summary.healthy else self.last_error
        summary.seconds = time.monotonic() - started
        log.info(
            "worker_stopped", passes=summary.passes, idle=summary.idle, healthy=summary.healthy
        )
        return summary
