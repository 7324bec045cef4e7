"""One pass's pushes to QuickBooks and the outcome recorded for each event.

SyncEngine.run_pass decides what is due and sendable; PushRun sends it: events that may
already be in QuickBooks are resolved first (requestid replay or DocNumber lookup), then fresh
invoices, payments after the invoice they apply to. Every answer becomes the event's next
status with QuickBooks's own message and our reason code.

Fresh invoices to a gateway that tells its realm's rate budget (QuickBooksGateway) go by what
the budget allows now, oldest first, in one wave of calls sent at once; the pass never waits
for the budget:
- when the backlog is more than singles could send within BATCH_HORIZON_SECONDS, the oldest go
  in a batch (if a batch may start now; the budget paces batches over the minute);
- the next oldest go as single creates, each with its own requestid, as many as the budget has
  room for now (its per-second tokens and its concurrency), all in flight at once beside the
  batch (each call on a client of its own: adapters.quickbooks.session);
- what the budget cannot take now waits for the next pass, and the pass tells the schedule
  when the budget has room again (RetrySchedule.wake): the loop skips the school until then,
  without reading its waiting events, and comes back then (the next pass sees the flights that
  arrived meanwhile, and decides on the whole backlog again).
Other gateways (the fakes) get batches of `batch_size`, one call at a time, as before.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable
from uuid import UUID

import structlog
from eventsourcing.persistence import IntegrityError
from structlog.contextvars import bound_contextvars

from domain.application import FlightLedger
from domain.customers import KnownCustomers
from domain.financial_event import FailureCategory, FinancialEvent, NotFound, Status
from domain.ids import doc_number, request_id
from domain.mappings import Mappings
from domain.ports import (
    AccountingGateway,
    FoundInvoice,
    InvoiceDraft,
    OutcomeKind,
    PaymentDraft,
    PushMetrics,
    PushOutcome,
    ReasonCode,
)
from domain.preflight import INVOICE_KINDS, RECONNECT_MESSAGE, invoice_draft, payment_draft
from domain.qbo_lists import QboLists
from domain.sync import (
    applies_to_reference,
    blamed_mappings,
    chunks,
    found_by_doc_number,
    is_invoice,
    may_have_landed,
)
from services.retry_schedule import RetrySchedule

log = structlog.get_logger(__name__)

THROTTLE_PAUSE_SECONDS = 60.0
BATCH_HORIZON_SECONDS = 0.5  # a backlog singles cannot send within this goes in a batch
MIN_WAKE_SECONDS = 0.005  # the soonest the loop comes back for what the budget left waiting
CALL_THREADS = 64  # calls in flight at once in this process (the budget bounds each realm's)
AUTH_STOP_REASONS = frozenset(
    {ReasonCode.AUTH_EXPIRED, ReasonCode.AUTH_FAILED, ReasonCode.NOT_CONNECTED}
)


@dataclass
class PassReport:
    """What one pass over one school did."""

    school: str
    calls: int = 0  # requests made to the accounting system
    recorded: int = 0  # financial events that got a new status
    outcomes: dict[str, int] = field(default_factory=dict)  # new status -> count
    skipped: str | None = None  # "auto_invoice_off" | "paused"
    stopped: str | None = None  # reason code that stopped calls (auth)

    @property
    def worked(self) -> bool:
        """The pass changed something or asked QBO something."""
        return self.calls > 0 or self.recorded > 0

    def count(self, status: Status, n: int = 1) -> None:
        """Count events that reached a status."""
        self.outcomes[status.value] = self.outcomes.get(status.value, 0) + n
        self.recorded += n


@contextmanager
def pushing(event_id: UUID, request: str | None = None) -> Iterator[None]:
    """Log context of one push: the event's id and, when known, the QuickBooks requestid it
    is sent with (the pass has bound school and realm already)."""
    context = {"event_id": str(event_id)}
    if request:
        context["request_id"] = request
    with bound_contextvars(**context):
        yield


@runtime_checkable
class BudgetedGateway(Protocol):
    """A gateway that tells what its realm's rate budget allows now (QuickBooksGateway)."""

    def budget_room(self, within: float = 0.0) -> int:
        """Single requests that could start within `within` seconds without a wait."""
        ...

    def budget_wait(self, *, batch: bool) -> float:
        """Seconds until a (batch) request could start; 0: now."""
        ...

    def budget_settles_in(self) -> float:
        """Seconds until another worker may call the realm on a fresh budget of its own
        (0: now); until then this worker keeps the school (SyncEngine.keeps_realm)."""
        ...


class PassHost(Protocol):
    """What a pass's steps (PushRun, CorrectionRun, auto-customers) need from the engine that
    runs them (services.push_pass.SyncEngine), so they never import it: no import circle."""

    ledger: FlightLedger
    metrics: PushMetrics  # the worker's counters (adapters.metrics, wired by workers/runtime.py)
    actor: str
    batch_size: int
    gateways: Callable[[str], AccountingGateway]
    known_customers: KnownCustomers | None
    retries: RetrySchedule  # due times, realm pauses and circuit breakers
    should_stop: Callable[[], bool]
    cached_lists: Callable[[str], QboLists | None]  # a school's cached QuickBooks lists

    def now(self) -> datetime:
        """The ledger clock's time."""
        ...

    def save_each_on_conflict(self, events: Sequence[FinancialEvent]) -> list[FinancialEvent]:
        """Save in one transaction; on a version conflict one by one, dropping losers."""
        ...

    def require_all(
        self,
        events: Sequence[FinancialEvent],
        reason: ReasonCode,
        message: str,
        report: PassReport,
    ) -> None:
        """Every event that still waits goes to action_required with one reason and message."""
        ...

    def usable_gateway(
        self, school: str, events: Sequence[FinancialEvent], report: PassReport
    ) -> AccountingGateway | None:
        """The school's gateway, or None when it cannot be built (every event then says why)."""
        ...


class PushRun:
    """The sending part of one pass: careful resolutions, invoice batches, then payments."""

    def __init__(
        self,
        engine: PassHost,
        school: str,
        mappings: Mappings,
        report: PassReport,
        gateway: AccountingGateway,
        *,
        own_numbers: bool = True,
    ) -> None:
        self.engine = engine
        self.retries = engine.retries  # the schedule this run reads and updates
        # QuickBooks keeps our DocNumbers (custom transaction numbers on): batches and DocNumber
        # lookups are safe. Off, every invoice goes alone with its requestid, never looked up.
        self.own_numbers = own_numbers
        self.ledger = engine.ledger
        self.school = school
        self.mappings = mappings
        self.report = report
        self.stopped: PushOutcome | None = None
        self.gateway = gateway
        self.touched: dict[UUID, FinancialEvent] = {}

    def now(self) -> datetime:
        return self.engine.now()

    # --- orchestration ------------------------------------------------------------------------

    def push(self, events: Sequence[FinancialEvent]) -> None:
        careful = [e for e in events if may_have_landed(e)]
        fresh_invoices = [e for e in events if not may_have_landed(e) and is_invoice(e)]
        payments = [e for e in events if not may_have_landed(e) and not is_invoice(e)]
        for event in careful:
            self.touched[event.id] = event
        for event in fresh_invoices:
            self.touched[event.id] = event
        for event in careful:
            if self.halted:
                break
            self._resolve(event)
        if isinstance(self.gateway, BudgetedGateway):
            self._push_by_budget(fresh_invoices, self.gateway)
        else:
            size = self.engine.batch_size if self.own_numbers else 1
            for chunk in chunks(fresh_invoices, size):
                if self.halted:
                    break
                self._push_invoices(chunk)
        for event in payments:
            if self.halted:
                break
            self._push_payment(event)
        if self.stopped is not None:
            self._stop_rest(events)

    def stop(self, events: Sequence[FinancialEvent], outcome: PushOutcome) -> None:
        """A call before any push (e.g. a customer lookup) failed on auth: stop the pass."""
        self.stopped = outcome
        self._stop_rest(events)

    def record_failure(self, events: Sequence[FinancialEvent], outcome: PushOutcome) -> None:
        """A step before the push failed for these events: each gets the outcome's status."""
        for event in events:
            with pushing(event.id):
                self._record(event, replace(outcome, event_id=event.id), draft=None, careful=False)
        self.engine.save_each_on_conflict(events)

    @property
    def halted(self) -> bool:
        """No more calls this pass: auth stopped it, the realm is paused (429 or an open
        circuit breaker), or the worker is shutting down (SIGTERM, --max-seconds)."""
        return (
            self.stopped is not None
            or self.retries.paused_until(self.school) is not None
            or self.engine.should_stop()
        )

    def _stop_rest(self, events: Sequence[FinancialEvent]) -> None:
        """Auth failed mid-pass: every event still waiting goes to action_required now."""
        assert self.stopped is not None
        reason = self.stopped.reason_code or ReasonCode.AUTH_EXPIRED
        message = self.stopped.message or RECONNECT_MESSAGE
        rest = [
            e for e in events if e.status in (Status.PENDING, Status.RETRYING, Status.UNCERTAIN)
        ]
        self.engine.require_all(rest, reason, message, self.report)
        self.report.stopped = reason.value
        if reason == ReasonCode.AUTH_EXPIRED:
            self._expire_connection(message)

    def _expire_connection(self, message: str) -> None:
        connection = self.ledger.connection(self.school)
        try:
            connection.expire(message=message, at=self.now())
            if connection.pending_events:
                self.ledger.save(connection)
        except IntegrityError:
            log.info("connection_changed_concurrently")

    # --- sending ------------------------------------------------------------------------------

    def _start(self, events: Sequence[FinancialEvent], *, batched: bool) -> list[FinancialEvent]:
        """Append PushStarted for the whole group in one transaction, before the call."""
        now = self.now()
        for event in events:
            draft_doc = event.doc_number or doc_number(event.kind, event.reference)
            event.start_push(
                request_id=request_id(event.id, event.generation),
                doc_number=draft_doc,
                batched=batched,
                actor=self.engine.actor,
                at=now,
            )
        return self.engine.save_each_on_conflict(events)

    def _push_invoices(self, chunk: list[FinancialEvent]) -> None:
        batched = len(chunk) > 1
        started = self._start(chunk, batched=batched)
        if not started:
            return
        drafts = [invoice_draft(e, self.mappings) for e in started]
        self.report.calls += 1
        if len(drafts) == 1:
            with pushing(started[0].id, drafts[0].request_id):
                outcomes = [self.gateway.push_invoice(drafts[0])]
        else:
            outcomes = list(self.gateway.push_invoices(drafts))
        self._record_answers(started, drafts, outcomes, self.now())
        self.engine.save_each_on_conflict(started)

    def _record_answers(
        self,
        events: Sequence[FinancialEvent],
        drafts: Sequence[InvoiceDraft],
        outcomes: Sequence[PushOutcome],
        now: datetime,
    ) -> None:
        """One call's answers: the realm's schedule learns from them, each event records its
        own (an event the answer left out is uncertain: QuickBooks may hold it)."""
        self.retries.observe_call(self.school, outcomes, now)
        by_id = {o.event_id: o for o in outcomes}
        for event, draft in zip(events, drafts, strict=True):
            outcome = by_id.get(event.id) or PushOutcome(
                event_id=event.id,
                kind=OutcomeKind.UNCERTAIN,
                message="QuickBooks returned no answer for this invoice in the batch",
            )
            with pushing(event.id, draft.request_id):
                self._record(event, outcome, draft=draft, careful=False)

    def _push_by_budget(self, invoices: Sequence[FinancialEvent], budget: BudgetedGateway) -> None:
        """Fresh invoices as the realm's budget allows now, oldest first, in one wave of calls
        in flight at once: a batch for a backlog, singles as far as the budget has room; what
        is left waits for the next pass, which the schedule is told when to start."""
        queue = list(invoices)  # oldest first
        if not queue or self.halted:
            return
        batch_size = self.engine.batch_size if self.own_numbers else 1
        room = budget.budget_room()
        batch: list[FinancialEvent] = []
        if (
            batch_size > 1
            and len(queue) > budget.budget_room(BATCH_HORIZON_SECONDS)
            and budget.budget_wait(batch=True) <= 0
        ):
            batch, queue = queue[:batch_size], queue[batch_size:]
            room = max(0, room - 1)  # the batch takes one of the second's requests
        singles, queue = queue[:room], queue[room:]
        if batch or singles:
            self._push_together(batch, singles)
        if not queue or self.halted:
            return
        wait = budget.budget_wait(batch=False)
        if batch_size > 1:
            wait = min(wait, budget.budget_wait(batch=True))
        wait = max(wait, MIN_WAKE_SECONDS)
        self.retries.wake(self.school, self.now(), wait)
        log.debug("budget_spent", waiting=len(queue), seconds=round(wait, 3))

    def _push_together(self, batch: list[FinancialEvent], singles: list[FinancialEvent]) -> None:
        """One batch and single creates, all in flight at once; outcomes recorded in one save.

        PushStarted of every one is saved before any call (a crash leaves them `syncing`, and
        recovery resolves each by its requestid or, batched, by its DocNumber). Every call runs
        on a thread of its own with the pass's log context, through the gateway, which gives
        each concurrent call its own HTTP client; the budget was asked for room for all of
        them (its concurrency included) before.
        """
        calls: list[tuple[bool, list[FinancialEvent]]] = []
        if batch:
            calls.append((True, self._start(batch, batched=True)))
        if singles:
            calls.extend((False, [e]) for e in self._start(singles, batched=False))
        calls = [(batched, group) for batched, group in calls if group]
        if not calls:
            return
        drafts = [[invoice_draft(e, self.mappings) for e in group] for _, group in calls]

        def send(n: int) -> list[PushOutcome]:
            if calls[n][0]:
                return list(self.gateway.push_invoices(drafts[n]))
            with pushing(drafts[n][0].event_id, drafts[n][0].request_id):
                return [self.gateway.push_invoice(drafts[n][0])]

        self.report.calls += len(calls)
        answers = in_flight_at_once(send, len(calls))
        now = self.now()
        started: list[FinancialEvent] = []
        for (_, group), group_drafts, outcomes in zip(calls, drafts, answers, strict=True):
            self._record_answers(group, group_drafts, outcomes, now)
            started.extend(group)
        self.engine.save_each_on_conflict(started)

    def _push_payment(self, event: FinancialEvent) -> None:
        careful = may_have_landed(event)
        wait, linked = self._linked_invoice(event)
        if wait:
            return  # waits for its invoice
        self.touched[event.id] = event
        started = self._start([event], batched=False)
        if not started:
            return
        draft = payment_draft(event, self.mappings, linked)
        with pushing(event.id, draft.request_id):
            self.report.calls += 1
            outcome = self.gateway.push_payment(draft)
            self.retries.observe_call(self.school, [outcome], self.now())
            self._record(event, outcome, draft=None, careful=careful, payment=draft)
        self.engine.save_each_on_conflict([event])

    def _linked_invoice(self, event: FinancialEvent) -> tuple[bool, str | None]:
        """(must wait, linked invoice qbo id): a payment waits until its invoice is synced."""
        ref = applies_to_reference(event)
        if ref is None:
            return False, None
        invoice = next(
            (e for e in self.touched.values() if is_invoice(e) and e.reference == ref), None
        )
        if invoice is None:
            try:
                found = self.ledger.find(self.school, ref)
            except NotFound:
                return True, None
            if not is_invoice(found):
                return True, None
            invoice = found
        if invoice.status == Status.SYNCED and invoice.qbo_id:
            return False, invoice.qbo_id
        if invoice.status == Status.DISMISSED:
            return False, None
        return True, None

    def _resolve(self, event: FinancialEvent) -> None:
        """An event that may already be in QBO: replay (single) or DocNumber lookup (batched)."""
        if not is_invoice(event):
            self._push_payment(event)
            return
        draft = invoice_draft(event, self.mappings)
        with pushing(event.id, draft.request_id):
            self._resolve_invoice(event, draft)

    def _resolve_invoice(self, event: FinancialEvent, draft: InvoiceDraft) -> None:
        # batched (no requestid of its own), or a new requestid generation after a refusal:
        # the old id's replay no longer guards, the DocNumber does
        new_generation = event.request_id not in (None, draft.request_id)
        if self.own_numbers and (event.batched or new_generation):
            self.report.calls += 1
            lookup = self.gateway.find_invoice(draft.doc_number)
            if lookup.failure is not None:
                self.retries.observe_call(self.school, [lookup.failure], self.now())
                self._lookup_failed(event, lookup.failure)
                return
            self.retries.breaker(self.school).succeeded()
            if lookup.found is not None:
                self._settle_found(event, draft, lookup.found)
                self.engine.save_each_on_conflict([event])
                return
        if not self._start([event], batched=False):
            return
        self.report.calls += 1
        outcome = self.gateway.push_invoice(draft)
        self.retries.observe_call(self.school, [outcome], self.now())
        self._record(event, outcome, draft=draft, careful=True)
        self.engine.save_each_on_conflict([event])

    def _settle_found(
        self, event: FinancialEvent, draft: InvoiceDraft, found: FoundInvoice
    ) -> None:
        """A lookup found an invoice with our DocNumber: ours -> synced, else duplicate."""
        now = self.now()
        self.retries.unschedule(event.id)
        outcome = found_by_doc_number(draft, found)
        if outcome.kind == OutcomeKind.SYNCED:
            event.mark_synced(
                qbo_id=found.qbo_id, doc_number=draft.doc_number, actor=self.engine.actor, at=now
            )
            self.report.count(Status.SYNCED)
            log.info("invoice_found_by_doc_number", qbo_id=found.qbo_id)
            return
        event.require_action(
            reason_code=ReasonCode.DUPLICATE_DOC_NUMBER,
            message=outcome.message,
            missing=[],
            actor=self.engine.actor,
            at=now,
        )
        self.report.count(Status.ACTION_REQUIRED)

    def _lookup_failed(self, event: FinancialEvent, failure: PushOutcome) -> None:
        """A DocNumber lookup failed: auth stops the pass; anything else waits and retries."""
        if failure.kind == OutcomeKind.ACTION_REQUIRED and failure.reason_code in AUTH_STOP_REASONS:
            self.stopped = failure
            return
        if failure.pause_realm:
            self._pause(failure)
        failures = event.failures + 1
        self.retries.schedule(event, failures, self.now(), failure.retry_after or 0.0)
        log.info("doc_number_lookup_failed", message=failure.message)

    # --- outcomes -----------------------------------------------------------------------------

    def _pause(self, outcome: PushOutcome) -> None:
        seconds = outcome.retry_after if outcome.retry_after is not None else THROTTLE_PAUSE_SECONDS
        self.retries.pause(self.school, self.now() + timedelta(seconds=seconds))
        log.info("realm_paused", seconds=seconds)

    def _record(
        self,
        event: FinancialEvent,
        outcome: PushOutcome,
        *,
        draft: InvoiceDraft | None,
        careful: bool,
        payment: PaymentDraft | None = None,
    ) -> None:
        """Turn one classified outcome into the event's next status."""
        now = self.now()
        actor = self.engine.actor
        if outcome.kind == OutcomeKind.SYNCED:
            doc = outcome.doc_number or (draft.doc_number if draft else None) or event.doc_number
            event.mark_synced(
                qbo_id=outcome.qbo_id or "", doc_number=doc or "", actor=actor, at=now
            )
            if event.kind in INVOICE_KINDS:
                self.engine.metrics.invoice_synced(event.created_on, datetime.now(UTC))
            self.retries.unschedule(event.id)
            self.report.count(Status.SYNCED)
            log.info("event_pushed", qbo_id=outcome.qbo_id)
            return
        if outcome.kind == OutcomeKind.ACTION_REQUIRED:
            reason = outcome.reason_code or ReasonCode.VALIDATION
            if reason in AUTH_STOP_REASONS and self.stopped is None:
                self.stopped = outcome
            message, missing = qbo_message(outcome), list(outcome.missing)
            if reason in (ReasonCode.INACTIVE_MAPPING, ReasonCode.INVALID_REFERENCE):
                inactive = None
                if reason == ReasonCode.INACTIVE_MAPPING and draft is not None:
                    self.report.calls += 1  # one metered read, only for an inactive mapping
                    inactive = self.gateway.inactive_references(
                        sorted({line.item_id for line in draft.lines}), [draft.customer_id]
                    )
                lists = self.engine.cached_lists(self.school) if inactive is None else None
                keys, sentence = blamed_mappings(event, draft or payment, outcome, inactive, lists)
                message, missing = message + sentence, keys + missing
            event.require_action(
                reason_code=reason, message=message, missing=missing, actor=actor, at=now
            )
            self.retries.unschedule(event.id)
            self.report.count(Status.ACTION_REQUIRED)
            log.info("action_required_recorded", reason_code=reason.value)
            return
        code = outcome.code or (str(outcome.http_status) if outcome.http_status else "network")
        throttled = outcome.pause_realm
        if throttled:
            self._pause(outcome)
        failures = 0 if throttled else event.failures + 1  # this one included
        if not throttled and self.retries.policy.exhausted(failures):
            category = FailureCategory.EXHAUSTED
            message = (
                f"{qbo_message(outcome)} (gave up after {failures} attempts: press Retry Failed)"
            )
        elif careful or outcome.kind == OutcomeKind.UNCERTAIN:
            category, message = FailureCategory.UNCERTAIN, qbo_message(outcome)
        else:
            category, message = FailureCategory.TRANSIENT, qbo_message(outcome)
        event.mark_failed(
            category=category,
            code=code,
            message=message,
            actor=actor,
            at=now,
            spends_attempt=not throttled,
        )
        self.report.count(event.status)  # STATUS_AFTER_FAILURE, applied by the aggregate
        if category == FailureCategory.EXHAUSTED:
            self.retries.unschedule(event.id)
        else:
            floor = outcome.retry_after or (THROTTLE_PAUSE_SECONDS if throttled else 0.0)
            self.retries.schedule(event, max(1, failures), now, floor)
        log.info("push_failed", category=category.value, code=code)


_calls: ThreadPoolExecutor | None = None
_calls_lock = threading.Lock()


def _call_pool() -> ThreadPoolExecutor:
    """The process's threads for calls in flight at once (made on first use)."""
    global _calls
    with _calls_lock:
        if _calls is None:
            _calls = ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="qbo-call")
        return _calls


def in_flight_at_once(
    send: Callable[[int], list[PushOutcome]], count: int
) -> list[list[PushOutcome]]:
    """send(0) ... send(count - 1) at the same time, each on a thread with the caller's log
    context; their answers in order. The last runs on the calling thread."""
    if count == 1:
        return [send(0)]
    pool = _call_pool()
    futures: list[Future[list[PushOutcome]]] = [
        pool.submit(contextvars.copy_context().run, send, n) for n in range(count - 1)
    ]
    try:
        last = send(count - 1)
    finally:  # every call has ended before the pass goes on (or fails)
        wait(futures)
    return [*(f.result() for f in futures), last]


def unusable_gateway(exc: Exception) -> str:
    """Why no call can be made: the gateway could not be built."""
    return f"Cannot use the QuickBooks connection: {type(exc).__name__}: {exc}"


def qbo_message(outcome: PushOutcome) -> str:
    """QBO's own message with its error code; never a bare status code."""
    text = outcome.message.strip() or "QuickBooks gave no message"
    if outcome.code and outcome.code not in text:
        text = f"{text} (QuickBooks error {outcome.code})"
    return text
