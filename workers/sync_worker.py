"""The sync engine: one pass per school from preflight to a recorded outcome for every event.

The caller must own the school's realm (adapters.realm_locks) while a pass or a recovery runs:
then every event found ``syncing`` at the start of a pass was left by a dead worker (or a
crashed pass) and recovery turns it into ``uncertain``, which is resolved without duplicates.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import structlog
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain.application import FlightLedger
from domain.customers import KnownCustomers
from domain.financial_event import FailureCategory, FinancialEvent, Status
from domain.ports import AccountingGateway, PushOutcome, ReasonCode
from domain.preflight import check_connection, check_mappings
from domain.qbo_lists import QboLists
from domain.sync import BATCH_MAX, CircuitBreaker, RetryPolicy, is_outage
from projections.view import FinancialEventView
from workers.auto_customers import resolve_new_students
from workers.corrections import CorrectionRun, split_corrections
from workers.push_run import PassReport, PushRun, unusable_gateway

__all__ = ["GatewayFactory", "PassReport", "SyncEngine"]

log = structlog.get_logger("flightledger.sync")

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

GatewayFactory = Callable[[str], AccountingGateway]


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
    ) -> None:
        self.ledger = ledger
        self.view = view
        self.gateways = gateways
        self.policy = policy or RetryPolicy()
        self.batch_size = max(1, min(batch_size, BATCH_MAX))
        self.actor = actor
        self.rng = rng or random.Random()
        self._due: dict[UUID, tuple[str, datetime]] = {}  # next attempt (memory only)
        self._paused_until: dict[str, datetime] = {}  # realm pauses after 429
        self.known_customers: KnownCustomers | None = None  # cached QBO customers (auto-customers)
        # the school's cached QuickBooks lists (no call): name the mapping behind a 2500
        self.cached_lists: Callable[[str], QboLists | None] = lambda school: None
        self._breakers: dict[str, CircuitBreaker] = {}  # per school's realm: outages back off
        # set by the worker loop: SIGTERM or --max-seconds reached; a pass stops between calls
        self.should_stop: Callable[[], bool] = lambda: False

    # --- time and due dates -------------------------------------------------------------------

    def now(self) -> datetime:
        """The ledger clock's time."""
        return self.ledger.clock.now()

    def _is_due(self, event: FinancialEvent, now: datetime) -> bool:
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
        delay = max(floor, self.policy.delay(max(1, failures), self.rng))
        self._due[event.id] = (event.school, now + timedelta(seconds=delay))

    def unschedule(self, event_id: UUID) -> None:
        """The event no longer waits for a retry."""
        self._due.pop(event_id, None)

    def pause(self, school: str, until: datetime) -> None:
        """Call nothing for the school's realm before until (after a 429)."""
        self._paused_until[school] = until

    def _forget(self, school: str, keep: Collection[UUID]) -> None:
        """Drop due dates of a school's events that no longer wait."""
        for event_id, (owner, _) in list(self._due.items()):
            if owner == school and event_id not in keep:
                del self._due[event_id]

    def next_due(self, school: str | None = None) -> datetime | None:
        """The earliest time a retrying/uncertain event (or a paused realm) becomes due."""
        times = [when for s, when in self._due.values() if school is None or s == school]
        times.extend(
            when for s, when in self._paused_until.items() if school is None or s == school
        )
        return min(times) if times else None

    def paused_until(self, school: str) -> datetime | None:
        """When a throttled realm may be called again."""
        return self._paused_until.get(school)

    def breaker(self, school: str) -> CircuitBreaker:
        """The school's realm circuit breaker (memory only: a restart starts closed)."""
        return self._breakers.setdefault(school, CircuitBreaker())

    def observe_call(self, school: str, outcomes: Sequence[PushOutcome]) -> None:
        """One call's answer(s) feed the realm's breaker: all outages count one failure."""
        breaker = self.breaker(school)
        if outcomes and all(is_outage(o) for o in outcomes):
            now = self.now()
            opened = breaker.failed(now)
            if opened is not None:
                self.pause(school, now + timedelta(seconds=opened))
                log.warning(
                    "realm_circuit_open",
                    school=school,
                    seconds=opened,
                    message=outcomes[0].message[:300],
                )
        elif outcomes:
            if breaker.half_open or breaker.failures:
                log.info("realm_circuit_closed", school=school)
            breaker.succeeded()

    # --- reading ------------------------------------------------------------------------------

    def _load(self, school: str, statuses: Sequence[str]) -> list[FinancialEvent]:
        """Aggregates of the view's rows, re-read from the log (the log decides, not the view)."""
        events: list[FinancialEvent] = []
        for row in self.view.list(school, statuses=list(statuses)):
            try:
                event = self.ledger.financial_event(row.id)
            except AggregateNotFoundError:
                continue
            if event.status.value in statuses:
                events.append(event)
        return events

    def has_active(self, school: str) -> bool:
        """The view shows events that are not settled (pending/retrying/uncertain/syncing)."""
        return bool(self.view.list(school, statuses=list(ACTIVE_STATUSES), limit=1))

    # --- recovery -----------------------------------------------------------------------------

    def recover(self, school: str) -> int:
        """Events left ``syncing`` (by a dead worker or a crashed pass) become ``uncertain``."""
        orphans = self._load(school, [Status.SYNCING.value])
        now = self.now()
        for event in orphans:
            event.mark_failed(
                category=FailureCategory.UNCERTAIN,
                code="interrupted",
                message=INTERRUPTED_MESSAGE,
                actor=self.actor,
                at=now,
            )
            self._due[event.id] = (school, now)
        if orphans:
            self.save_each_on_conflict(orphans)
            log.info("syncing_recovered", school=school, count=len(orphans))
        return len(orphans)

    # --- one pass -----------------------------------------------------------------------------

    def run_pass(self, school: str) -> PassReport:
        """Preflight, push and record outcomes for every due waiting event of one school."""
        report = PassReport(school)
        now = self.now()
        if not self.ledger.settings(school).auto_invoice:
            self._forget(school, keep=())
            report.skipped = "auto_invoice_off"
            return report
        paused = self._paused_until.get(school)
        if paused is not None:
            if paused > now:
                report.skipped = "paused"
                return report
            del self._paused_until[school]
        self.breaker(school).allows(now)  # a cooldown that passed lets one probe call through
        waiting = self._load(
            school, [Status.PENDING.value, Status.RETRYING.value, Status.UNCERTAIN.value]
        )
        self._forget(school, keep={e.id for e in waiting})
        if not waiting:
            return report
        connection = self.ledger.connection(school)
        blocked = check_connection(connection, now)
        if blocked is not None:
            self.require_all(waiting, blocked.reason_code, blocked.message, report)
            return report
        due = [e for e in waiting if self._is_due(e, now)]
        mappings = self.ledger.mappings(school)
        if self.ledger.settings(school).auto_customers:  # new students get their customer first
            resolved = resolve_new_students(self, school, due, mappings, report)
            if resolved is None:  # QuickBooks refused the connection: every event says why
                return report
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
            return report
        try:  # built before anything is recorded as started
            gateway = self.gateways(school)
        except Exception as exc:  # no usable gateway: say why on every event, call nothing
            message = unusable_gateway(exc)
            log.warning("gateway_unavailable", school=school, error=message)
            self.require_all(sendable, ReasonCode.NOT_CONNECTED, message, report)
            return report
        creates, corrections = split_corrections(sendable)
        run = PushRun(
            self, school, mappings, report, gateway, own_numbers=connection.keeps_doc_numbers
        )
        run.push(creates)
        if corrections and not run.halted:
            CorrectionRun(self, school, mappings, report, gateway).run(corrections)
        return report

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
            self._due.pop(event.id, None)
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
