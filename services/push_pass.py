"""The sync engine: one pass per school from preflight to a recorded outcome for every event.

The caller must own the school's realm (adapters.realm_locks) while a pass or a recovery runs:
then every event found ``syncing`` at the start of a pass was left by a dead worker (or a
crashed pass) and recovery turns it into ``uncertain``, which is resolved without duplicates.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

import structlog
from eventsourcing.persistence import IntegrityError, PersistenceError
from structlog.contextvars import bound_contextvars

from domain.application import FlightLedger, PassReads
from domain.connection import Connection
from domain.customers import KnownCustomers
from domain.financial_event import FailureCategory, FinancialEvent, Status
from domain.mappings import Mappings
from domain.ports import (
    AccountingGateway,
    NoMetrics,
    PushMetrics,
    PushOutcome,
    ReasonCode,
    StoreUnavailable,
)
from domain.preflight import check_connection, check_mappings
from domain.qbo_lists import QboLists
from domain.settings import Settings
from domain.sync import BATCH_MAX, CircuitBreaker, RetryPolicy
from projections.view import EventRow, FinancialEventView
from services.corrections import CorrectionRun, split_corrections
from services.new_customers import resolve_new_students
from services.push_run import BudgetedGateway, PassReport, PushRun, unusable_gateway
from services.retry_schedule import RetrySchedule

__all__ = ["GatewayFactory", "PassReport", "SyncEngine"]

log = structlog.get_logger(__name__)

WORKER_ACTOR = "worker"
INTERRUPTED_MESSAGE = (
    "The push was interrupted before its outcome was recorded; "
    "QuickBooks is checked before anything is sent again"
)
ACTIVE_STATUSES = (
    Status.PENDING.value,
    Status.RETRYING.value,
    Status.UNCERTAIN.value,
    Status.SYNCING.value,
)
WAITING = (Status.PENDING.value, Status.RETRYING.value, Status.UNCERTAIN.value)
SYNCING = Status.SYNCING.value

GatewayFactory = Callable[[str], AccountingGateway]


def _one_at_a_time(factory: GatewayFactory) -> GatewayFactory:
    """The factory behind a lock: its cache of gateways is shared by the passes' threads."""
    lock = threading.Lock()

    def gateway(school: str) -> AccountingGateway:
        with lock:
            return factory(school)

    return gateway


class SyncEngine:
    """Pushes a school's waiting financial events and records every outcome in the log."""

    def __init__(
        self,
        ledger: FlightLedger,
        view: FinancialEventView,
        gateways: GatewayFactory,
        *,
        policy: RetryPolicy | None = None,
        batch_size: int = BATCH_MAX,
        actor: str = WORKER_ACTOR,
        rng: random.Random | None = None,
        metrics: PushMetrics | None = None,
    ) -> None:
        self.ledger = ledger
        self.metrics: PushMetrics = metrics or NoMetrics()  # the worker wires adapters.metrics
        self.view = view
        self.gateways = _one_at_a_time(gateways)  # passes of several schools run at once
        self.policy = policy or RetryPolicy()
        self.batch_size = max(1, min(batch_size, BATCH_MAX))
        self.actor = actor
        self.rng = rng or random.Random()
        # due times, realm pauses (429, open circuit) and breakers: memory only
        self.retries = RetrySchedule(self.policy, self.rng)
        self.known_customers: KnownCustomers | None = None  # cached QBO customers (auto-customers)
        # the school's cached QuickBooks lists (no call): name the mapping of an invalid reference
        self.cached_lists: Callable[[str], QboLists | None] = lambda school: None
        # set by the worker loop: SIGTERM or --max-seconds reached; a pass stops between calls
        self.should_stop: Callable[[], bool] = lambda: False
        self._used: dict[str, AccountingGateway] = {}  # the gateway each school's pass last used

    # --- time and due dates -------------------------------------------------------------------

    def now(self) -> datetime:
        """The ledger clock's time."""
        return self.ledger.clock.now()

    def schedule(self, event: FinancialEvent, failures: int, now: datetime, floor: float) -> None:
        """RetrySchedule.schedule (kept for callers of the engine)."""
        self.retries.schedule(event, failures, now, floor)

    def unschedule(self, event_id: UUID) -> None:
        """RetrySchedule.unschedule."""
        self.retries.unschedule(event_id)

    def pause(self, school: str, until: datetime) -> None:
        """RetrySchedule.pause."""
        self.retries.pause(school, until)

    def next_due(self, school: str | None = None) -> datetime | None:
        """The earliest time a retrying/uncertain event (or a paused realm) becomes due."""
        return self.retries.next_due(school)

    def paused_until(self, school: str) -> datetime | None:
        """When a throttled realm may be called again."""
        return self.retries.paused_until(school)

    def breaker(self, school: str) -> CircuitBreaker:
        """The school's realm circuit breaker (memory only: a restart starts closed)."""
        return self.retries.breaker(school)

    def observe_call(self, school: str, outcomes: Sequence[PushOutcome]) -> None:
        """One call's answer(s) feed the realm's breaker: all outages count one failure."""
        self.retries.observe_call(school, outcomes, self.now())

    # --- reading ------------------------------------------------------------------------------

    def _read(self, school: str, *, waiting: bool) -> tuple[list[EventRow], PassReads]:
        """The view's unsettled rows, once, and from the log, once (FlightLedger.pass_reads),
        the school's settings, connection and mappings and the events of the rows listed
        syncing (and, with `waiting`, unless the realm is paused, of the waiting rows too): the
        log decides their status, not the view."""
        rows = self.view.list(school, statuses=list(ACTIVE_STATUSES))
        paused = not waiting or self.retries.still_paused(school, self.now())
        wanted = [r.id for r in rows if r.status == SYNCING or (not paused and r.status in WAITING)]
        return rows, self.ledger.pass_reads(school, wanted)

    @staticmethod
    def _events(
        rows: Sequence[EventRow], reads: PassReads, statuses: Sequence[str], listed: Sequence[str]
    ) -> list[FinancialEvent]:
        """The events read of the rows listed in `listed` whose status in the log is in
        `statuses`, in the view's order."""
        found = (reads.events.get(r.id) for r in rows if r.status in listed)
        return [e for e in found if e is not None and e.status.value in statuses]

    # --- recovery -----------------------------------------------------------------------------

    def recover(self, school: str) -> int:
        """Events left ``syncing`` (by a dead worker or a crashed pass) become ``uncertain``."""
        with bound_contextvars(school=school):
            rows, reads = self._read(school, waiting=False)
            return self._recover_orphans(school, rows, reads)

    def _recover_orphans(self, school: str, rows: Sequence[EventRow], reads: PassReads) -> int:
        """The read events listed and still ``syncing`` become ``uncertain``; one another
        process changed meanwhile is dropped from `reads` (the pass must not push a stale copy)."""
        orphans = self._events(rows, reads, [SYNCING], [SYNCING])
        if not orphans:
            return 0
        now = self.now()
        for event in orphans:
            event.mark_failed(
                category=FailureCategory.UNCERTAIN,
                code="interrupted",
                message=INTERRUPTED_MESSAGE,
                actor=self.actor,
                at=now,
            )
            self.retries.due_now(event, now)
        saved = self.save_each_on_conflict(orphans)
        for lost in {e.id for e in orphans} - {e.id for e in saved}:
            del reads.events[lost]
        log.info("syncing_recovered", realm=reads.connection.realm, count=len(saved))
        return len(saved)

    # --- one pass -----------------------------------------------------------------------------

    def run_school(self, school: str) -> PassReport:
        """recover, then run_pass, on one read of the view and one of the log (`_read`)."""
        with bound_contextvars(school=school):
            rows, reads = self._read(school, waiting=True)
            self._recover_orphans(school, rows, reads)
            return self._run_pass(school, rows, reads)

    def run_pass(self, school: str) -> PassReport:
        """Preflight, push and record outcomes for every due waiting event of one school.

        Every line logged meanwhile carries `school`, and from the connection's read on its
        `realm` (structlog contextvars; each push adds its `event_id` and `request_id`)."""
        with bound_contextvars(school=school):
            rows, reads = self._read(school, waiting=True)
            return self._run_pass(school, rows, reads)

    def _run_pass(self, school: str, rows: Sequence[EventRow], reads: PassReads) -> PassReport:
        report = PassReport(school)
        now = self.now()
        if not reads.settings.auto_invoice:
            self.retries.forget(school, keep=())
            report.skipped = "auto_invoice_off"
            return report
        if self.retries.still_paused(school, now):
            report.skipped = "paused"
            return report
        self.retries.breaker(school).allows(now)  # a passed cooldown lets one probe call through
        # rows the view still lists as syncing count too: recovery may just have made them
        # uncertain (else a worker --until-idle stopped idle with them uncertain)
        waiting = self._events(rows, reads, WAITING, ACTIVE_STATUSES)
        self.retries.forget(school, keep={e.id for e in waiting})
        if not waiting:
            return report
        connection = reads.connection
        with bound_contextvars(realm=connection.realm):
            self._push_waiting(
                school, connection, waiting, report, now, reads.settings, reads.mappings
            )
        return report

    def _push_waiting(
        self,
        school: str,
        connection: Connection,
        waiting: list[FinancialEvent],
        report: PassReport,
        now: datetime,
        settings: Settings,
        mappings: Mappings,
    ) -> None:
        """The pass once something waits: preflight, new students, pushes, corrections."""
        blocked = check_connection(connection, now)
        if blocked is not None:
            self.require_all(waiting, blocked.reason_code, blocked.message, report)
            return
        due = [e for e in waiting if self.retries.is_due(e, now)]
        if settings.auto_customers:  # new students get their customer first
            resolved = resolve_new_students(self, school, due, mappings, report)
            if resolved is None:  # QuickBooks refused the connection: every event says why
                return
            due, mappings = resolved
        sendable: list[FinancialEvent] = []
        refused: list[FinancialEvent] = []
        for event in due:
            problem = check_mappings(event, mappings)
            if problem is None:
                sendable.append(event)
                continue
            event.require_action(
                reason_code=problem.reason_code,
                message=problem.message,
                missing=list(problem.missing),
                actor=self.actor,
                at=now,
            )
            if event.pending_events:
                refused.append(event)
        if refused:
            self.save_each_on_conflict(refused)
            report.count(Status.ACTION_REQUIRED, len(refused))
        if not sendable:
            return
        gateway = self.usable_gateway(school, sendable, report)  # before anything is started
        if gateway is None:
            return
        creates, corrections = split_corrections(sendable)
        run = PushRun(
            self, school, mappings, report, gateway, own_numbers=connection.keeps_doc_numbers
        )
        run.push(creates)
        if corrections and not run.halted:
            CorrectionRun(self, school, mappings, report, gateway).run(corrections)
        if connection.last_error and report.stopped is None and report.outcomes.get("synced"):
            self._error_over(school, since=now)

    def _error_over(self, school: str, *, since: datetime) -> None:
        """This pass synced a record and met no auth error: a connection error recorded before
        it began is over (the pill tells the token's state again; domain.connection)."""
        connection = self.ledger.connection(school)
        connection.record_calls_succeeded(since=since, at=self.now())
        if not connection.pending_events:
            return
        try:
            self.ledger.save(connection)
        except IntegrityError:  # a test or a reconnect meanwhile: it said the newer thing
            log.info("connection_changed_concurrently")

    def usable_gateway(
        self, school: str, events: Sequence[FinancialEvent], report: PassReport
    ) -> AccountingGateway | None:
        """The school's gateway, or None when it cannot be built: then every event says why
        (not_connected) and nothing is called. A database that failed while the gateway was
        being built (the vault, the log) is not the connection's fault: it raises, the pass
        fails, the events stay as they were and the next round tries again."""
        try:
            gateway = self.gateways(school)
        except (StoreUnavailable, PersistenceError):
            raise
        except Exception as exc:  # no usable gateway: say why on every event, call nothing
            message = unusable_gateway(exc)
            log.warning("qbo_gateway_failed", error=message)
            self.require_all(events, ReasonCode.NOT_CONNECTED, message, report)
            return None
        self._used[school] = gateway
        return gateway

    def keeps_realm(self, school: str) -> bool:
        """Whether this worker should keep the school's lock after its pass: its realm's rate
        budget (in this process) had no room for the work within the last minute, or is busy
        (a pause, a request in flight, a batch within the minute, more requests within the
        last second than a fresh budget's burst leaves room for: RateBudget.settles_in).
        Another worker passing the school meanwhile, on a fresh budget of its own, would go
        over QBO's limits for the realm."""
        if self.retries.holds(school, self.now()):
            return True
        gateway = self._used.get(school)
        return isinstance(gateway, BudgetedGateway) and gateway.budget_settles_in() > 0

    def require_all(
        self,
        events: Sequence[FinancialEvent],
        reason: ReasonCode,
        message: str,
        report: PassReport,
    ) -> None:
        """Every event that still waits goes to action_required with one reason and message."""
        now = self.now()
        changed: list[FinancialEvent] = []
        for event in events:
            if event.status in (Status.SYNCED, Status.DISMISSED, Status.SYNCING):
                continue
            event.require_action(
                reason_code=reason, message=message, missing=[], actor=self.actor, at=now
            )
            if event.pending_events:
                changed.append(event)
            self.retries.unschedule(event.id)
        if changed:
            self.save_each_on_conflict(changed)
            report.count(Status.ACTION_REQUIRED, len(changed))

    # --- saving -------------------------------------------------------------------------------

    def save_each_on_conflict(self, events: Sequence[FinancialEvent]) -> list[FinancialEvent]:
        """Save in one transaction; on a version conflict save one by one, dropping losers."""
        try:
            self.ledger.save(*events)
            return list(events)
        except IntegrityError:
            saved: list[FinancialEvent] = []
            for event in events:
                try:
                    self.ledger.save(event)
                    saved.append(event)
                except IntegrityError:
                    log.info("event_changed_concurrently", event_id=str(event.id))
            return saved
