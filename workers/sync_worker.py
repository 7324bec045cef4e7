"""The sync engine: one pass per school from preflight to a recorded outcome for every event.

The caller must own the school's realm (workers.ownership) while a pass or a recovery runs:
then every event found ``syncing`` at the start of a pass was left by a dead worker (or a
crashed pass) and recovery turns it into ``uncertain``, which is resolved without duplicates.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import structlog
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain.application import FlightLedger, NotFound
from domain.financial_event import FailureCategory, FinancialEvent, Status
from domain.mappings import Mappings
from domain.ports import (
    AccountingGateway,
    FoundInvoice,
    InvoiceDraft,
    OutcomeKind,
    PushOutcome,
    ReasonCode,
)
from domain.preflight import (
    RECONNECT_MESSAGE,
    check_connection,
    check_mappings,
    invoice_draft,
    payment_draft,
)
from domain.sync import (
    BATCH_MAX,
    THROTTLE_CODES,
    RetryPolicy,
    applies_to_reference,
    blamed_mappings,
    chunks,
    failures_since_retry,
    is_invoice,
    is_throttle,
    may_have_landed,
    same_invoice,
)
from projections.view import FinancialEventView

log = structlog.get_logger("flightledger.sync")

WORKER_ACTOR = "worker"
THROTTLE_PAUSE_SECONDS = 60.0
AUTH_STOP_REASONS = frozenset({ReasonCode.AUTH_EXPIRED, ReasonCode.AUTH_FAILED})
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


@dataclass
class _Pending:
    """An event about to be pushed with its draft."""

    event: FinancialEvent
    draft: InvoiceDraft | None = None  # invoices
    payment_invoice_qbo_id: str | None = None  # payments: linked invoice


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

    # --- time and due dates -------------------------------------------------------------------

    def _now(self) -> datetime:
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

    def _schedule(self, event: FinancialEvent, failures: int, now: datetime, floor: float) -> None:
        delay = max(floor, self.policy.delay(max(1, failures), self.rng))
        self._due[event.id] = (event.school, now + timedelta(seconds=delay))

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
        now = self._now()
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
            self._save_each_on_conflict(orphans)
            log.info("syncing_recovered", school=school, count=len(orphans))
        return len(orphans)

    # --- one pass -----------------------------------------------------------------------------

    def run_pass(self, school: str) -> PassReport:
        """Preflight, push and record outcomes for every due waiting event of one school."""
        report = PassReport(school)
        now = self._now()
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
        waiting = self._load(
            school, [Status.PENDING.value, Status.RETRYING.value, Status.UNCERTAIN.value]
        )
        self._forget(school, keep={e.id for e in waiting})
        if not waiting:
            return report
        blocked = check_connection(self.ledger.connection(school), now)
        if blocked is not None:
            self._require_all(waiting, blocked.reason_code, blocked.message, report)
            return report
        due = [e for e in waiting if self._is_due(e, now)]
        mappings = self.ledger.mappings(school)
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
            self._save_each_on_conflict(refused)
            report.count(Status.ACTION_REQUIRED, len(refused))
        if not sendable:
            return report
        run = _Run(self, school, mappings, report)
        try:
            run.open_gateway()
        except Exception as exc:  # no usable gateway: say why on every event, call nothing
            message = f"Cannot use the QuickBooks connection: {type(exc).__name__}: {exc}"
            log.warning("gateway_unavailable", school=school, error=message)
            self._require_all(sendable, ReasonCode.NOT_CONNECTED, message, report)
            return report
        run.push(sendable)
        return report

    def _require_all(
        self,
        events: Sequence[FinancialEvent],
        reason: ReasonCode,
        message: str,
        report: PassReport,
    ) -> None:
        now = self._now()
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
            self._save_each_on_conflict(changed)
            report.count(Status.ACTION_REQUIRED, len(changed))

    # --- saving -------------------------------------------------------------------------------

    def _save_each_on_conflict(self, events: Sequence[FinancialEvent]) -> list[FinancialEvent]:
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


class _Run:
    """The sending part of one pass: careful resolutions, invoice batches, then payments."""

    def __init__(
        self, engine: SyncEngine, school: str, mappings: Mappings, report: PassReport
    ) -> None:
        self.engine = engine
        self.ledger = engine.ledger
        self.school = school
        self.mappings = mappings
        self.report = report
        self.stopped: PushOutcome | None = None
        self._gateway: AccountingGateway | None = None
        self.touched: dict[UUID, FinancialEvent] = {}

    def open_gateway(self) -> None:
        """Build the school's gateway before anything is recorded as started."""
        self._gateway = self.engine.gateways(self.school)

    @property
    def gateway(self) -> AccountingGateway:
        if self._gateway is None:
            self._gateway = self.engine.gateways(self.school)
        return self._gateway

    def now(self) -> datetime:
        return self.engine._now()

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
        for chunk in chunks(fresh_invoices, self.engine.batch_size):
            if self.halted:
                break
            self._push_invoices(chunk)
        for event in payments:
            if self.halted:
                break
            self._push_payment(event)
        if self.stopped is not None:
            self._stop_rest(events)

    @property
    def halted(self) -> bool:
        return self.stopped is not None or self.school in self.engine._paused_until

    def _stop_rest(self, events: Sequence[FinancialEvent]) -> None:
        """Auth failed mid-pass: every event still waiting goes to action_required now."""
        assert self.stopped is not None
        reason = self.stopped.reason_code or ReasonCode.AUTH_EXPIRED
        message = self.stopped.message or RECONNECT_MESSAGE
        rest = [
            e for e in events if e.status in (Status.PENDING, Status.RETRYING, Status.UNCERTAIN)
        ]
        self.engine._require_all(rest, reason, message, self.report)
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
            log.info("connection_changed_concurrently", school=self.school)

    # --- sending ------------------------------------------------------------------------------

    def _start(self, events: Sequence[FinancialEvent], *, batched: bool) -> list[FinancialEvent]:
        """Append PushStarted for the whole group in one transaction, before the call."""
        now = self.now()
        for event in events:
            draft_doc = event.doc_number or self._doc_number(event)
            event.start_push(
                request_id=self._request_id(event),
                doc_number=draft_doc,
                batched=batched,
                actor=self.engine.actor,
                at=now,
            )
        return self.engine._save_each_on_conflict(events)

    @staticmethod
    def _request_id(event: FinancialEvent) -> str:
        from domain.ids import request_id

        return request_id(event.id)

    @staticmethod
    def _doc_number(event: FinancialEvent) -> str:
        from domain.ids import doc_number

        return doc_number(event.kind, event.reference)

    def _push_invoices(self, chunk: list[FinancialEvent]) -> None:
        batched = len(chunk) > 1
        started = self._start(chunk, batched=batched)
        if not started:
            return
        drafts = [invoice_draft(e, self.mappings) for e in started]
        self.report.calls += 1
        if len(drafts) == 1:
            outcomes = [self.gateway.push_invoice(drafts[0])]
        else:
            outcomes = list(self.gateway.push_invoices(drafts))
        by_id = {o.event_id: o for o in outcomes}
        for event, draft in zip(started, drafts, strict=True):
            outcome = by_id.get(event.id) or PushOutcome(
                event_id=event.id,
                kind=OutcomeKind.UNCERTAIN,
                message="QuickBooks returned no answer for this invoice in the batch",
            )
            self._record(event, outcome, draft=draft, careful=False)
        self.engine._save_each_on_conflict(started)

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
        self.report.calls += 1
        outcome = self.gateway.push_payment(draft)
        self._record(event, outcome, draft=None, careful=careful)
        self.engine._save_each_on_conflict([event])

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
        if event.batched:
            self.report.calls += 1
            lookup = self.gateway.find_invoice(draft.doc_number)
            if lookup.failure is not None:
                self._lookup_failed(event, lookup.failure)
                return
            if lookup.found is not None:
                self._settle_found(event, draft, lookup.found)
                self.engine._save_each_on_conflict([event])
                return
        if not self._start([event], batched=False):
            return
        self.report.calls += 1
        outcome = self.gateway.push_invoice(draft)
        self._record(event, outcome, draft=draft, careful=True)
        self.engine._save_each_on_conflict([event])

    def _settle_found(
        self, event: FinancialEvent, draft: InvoiceDraft, found: FoundInvoice
    ) -> None:
        """A lookup found an invoice with our DocNumber: ours -> synced, else duplicate."""
        now = self.now()
        self.engine._due.pop(event.id, None)
        if same_invoice(found, draft):
            event.mark_synced(
                qbo_id=found.qbo_id, doc_number=draft.doc_number, actor=self.engine.actor, at=now
            )
            self.report.count(Status.SYNCED)
            log.info("invoice_found_by_doc_number", event_id=str(event.id), qbo_id=found.qbo_id)
            return
        event.require_action(
            reason_code=ReasonCode.DUPLICATE_DOC_NUMBER,
            message=(
                f"An invoice with DocNumber {draft.doc_number} but different contents already "
                f"exists in QuickBooks (id {found.qbo_id}, customer {found.customer_id}, "
                f"total {found.total}; ours: customer {draft.customer_id}, total {draft.total})"
            ),
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
        if is_throttle(failure):
            self._pause(failure)
        failures = self._failures(event) + 1
        self.engine._schedule(event, failures, self.now(), failure.retry_after or 0.0)
        log.info("doc_number_lookup_failed", event_id=str(event.id), message=failure.message)

    # --- outcomes -----------------------------------------------------------------------------

    def _failures(self, event: FinancialEvent) -> int:
        """Failed pushes since the last operator retry, throttling excluded (from the log)."""
        names: list[str] = []
        for entry in self.ledger.history(self.school, str(event.id)):
            if entry.type == "PushFailed" and str(entry.data.get("code")) in THROTTLE_CODES:
                continue
            names.append(entry.type)
        return failures_since_retry(names)

    def _pause(self, outcome: PushOutcome) -> None:
        seconds = outcome.retry_after if outcome.retry_after is not None else THROTTLE_PAUSE_SECONDS
        self.engine._paused_until[self.school] = self.now() + timedelta(seconds=seconds)
        log.info("realm_paused", school=self.school, seconds=seconds)

    def _record(
        self,
        event: FinancialEvent,
        outcome: PushOutcome,
        *,
        draft: InvoiceDraft | None,
        careful: bool,
    ) -> None:
        """Turn one classified outcome into the event's next status."""
        now = self.now()
        actor = self.engine.actor
        if outcome.kind == OutcomeKind.SYNCED:
            doc = outcome.doc_number or (draft.doc_number if draft else None) or event.doc_number
            event.mark_synced(
                qbo_id=outcome.qbo_id or "", doc_number=doc or "", actor=actor, at=now
            )
            self.engine._due.pop(event.id, None)
            self.report.count(Status.SYNCED)
            log.info(
                "event_pushed", event_id=str(event.id), school=self.school, qbo_id=outcome.qbo_id
            )
            return
        if outcome.kind == OutcomeKind.ACTION_REQUIRED:
            reason = outcome.reason_code or ReasonCode.VALIDATION
            if (
                reason == ReasonCode.DUPLICATE_DOC_NUMBER
                and draft is not None
                and self._resolve_duplicate(event, draft)
            ):
                return
            if reason in AUTH_STOP_REASONS and self.stopped is None:
                self.stopped = outcome
            message, missing = _message(outcome), list(outcome.missing)
            if reason in (ReasonCode.INACTIVE_MAPPING, ReasonCode.INVALID_REFERENCE):
                inactive = None
                if reason == ReasonCode.INACTIVE_MAPPING and draft is not None:
                    self.report.calls += 1  # one metered read, only after a 610
                    inactive = self.gateway.inactive_references(
                        sorted({line.item_id for line in draft.lines}), [draft.customer_id]
                    )
                keys, sentence = blamed_mappings(event, draft, outcome, inactive)
                message, missing = message + sentence, keys + missing
            event.require_action(
                reason_code=reason, message=message, missing=missing, actor=actor, at=now
            )
            self.engine._due.pop(event.id, None)
            self.report.count(Status.ACTION_REQUIRED)
            log.info("event_needs_action", event_id=str(event.id), reason_code=reason.value)
            return
        code = outcome.code or (str(outcome.http_status) if outcome.http_status else "network")
        throttled = is_throttle(outcome)
        if throttled:
            self._pause(outcome)
        failures = 0 if throttled else self._failures(event) + 1
        if not throttled and self.engine.policy.exhausted(failures):
            category = FailureCategory.EXHAUSTED
            message = f"{_message(outcome)} (gave up after {failures} attempts: press Retry Failed)"
        elif careful or outcome.kind == OutcomeKind.UNCERTAIN:
            category, message = FailureCategory.UNCERTAIN, _message(outcome)
        else:
            category, message = FailureCategory.TRANSIENT, _message(outcome)
        event.mark_failed(category=category, code=code, message=message, actor=actor, at=now)
        status = {
            FailureCategory.EXHAUSTED: Status.FAILED,
            FailureCategory.UNCERTAIN: Status.UNCERTAIN,
            FailureCategory.TRANSIENT: Status.RETRYING,
        }[category]
        self.report.count(status)
        if category == FailureCategory.EXHAUSTED:
            self.engine._due.pop(event.id, None)
        else:
            floor = outcome.retry_after or (THROTTLE_PAUSE_SECONDS if throttled else 0.0)
            self.engine._schedule(event, max(1, failures), now, floor)
        log.info("push_failed", event_id=str(event.id), category=category.value, code=code)

    def _resolve_duplicate(self, event: FinancialEvent, draft: InvoiceDraft) -> bool:
        """6140: look the DocNumber up; True when settled (ours -> synced, else duplicate)."""
        self.report.calls += 1
        lookup = self.gateway.find_invoice(draft.doc_number)
        if lookup.found is None:
            return False
        self._settle_found(event, draft, lookup.found)
        return True


def _message(outcome: PushOutcome) -> str:
    """QBO's own message with its error code; never a bare status code."""
    text = outcome.message.strip() or "QuickBooks gave no message"
    if outcome.code and outcome.code not in text:
        text = f"{text} (QuickBooks error {outcome.code})"
    return text
