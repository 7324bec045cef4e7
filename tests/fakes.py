"""Test-only doubles: a view read straight from the log, and a scripted accounting gateway."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.application import FlightLedger
from domain.ports import (
    AccountingGateway,
    CompanyInfo,
    ConnectionCheck,
    FoundInvoice,
    InvoiceDraft,
    LookupResult,
    OutcomeKind,
    PaymentDraft,
    PushOutcome,
    ReasonCode,
)
from domain.records import Record, RecordKind, parse_line
from domain.sync import found_by_doc_number
from projections.financial_events import InMemoryFinancialEventView, decode_events
from projections.view import (
    EventQuery,
    EventRow,
    FinancialEventView,
    KeyUsage,
    ReasonGroup,
)
from tests.factories import flight, jsonl, payment


class FakeFinancialEventView(FinancialEventView):
    """The view computed from the whole log on every read, so it always agrees with the log.

    Each read replays the log into projections' InMemoryFinancialEventView (the view --as-of
    reads use), so the fake passes the same view contract as the stored views
    (tests/integration/test_view_contract.py) without a projector running.
    """

    def __init__(self, ledger: FlightLedger) -> None:
        self.ledger = ledger

    def _current(self) -> InMemoryFinancialEventView:
        view = InMemoryFinancialEventView()
        recorder, start = self.ledger.recorder, 1
        while notifications := recorder.select_notifications(start, 10_000):
            for position, event in decode_events(self.ledger.mapper, notifications):
                view.apply(position, event)
            start = notifications[-1].id + 1
        return view

    def get(self, event_id: UUID) -> EventRow | None:
        """One row by id."""
        return self._current().get(event_id)

    def list(
        self,
        school: str,
        *,
        status: str | None = None,
        statuses: Sequence[str] = (),
        reason_code: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[EventRow]:
        """Rows of one school, oldest first, filtered."""
        return self._current().list(
            school, status=status, statuses=statuses, reason_code=reason_code, limit=limit
        )

    def newest_first(
        self,
        school: str,
        *,
        status: str | None = None,
        reason_code: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> builtins.list[EventRow]:
        """A page of rows, newest first, before log position `before`."""
        return self._current().newest_first(
            school, status=status, reason_code=reason_code, before=before, limit=limit
        )

    def counts(self, school: str) -> builtins.dict[str, int]:
        """Rows per status."""
        return self._current().counts(school)

    def counts_by_kind(self, school: str) -> builtins.dict[tuple[str, str], int]:
        """Rows per (status, kind)."""
        return self._current().counts_by_kind(school)

    def student_names(self, school: str, student_ids: Iterable[str]) -> builtins.dict[str, str]:
        """Display names of these students, as the log last gave them."""
        return self._current().student_names(school, student_ids)

    def reason_counts(self, school: str) -> builtins.dict[str, int]:
        """Action Required rows per reason code."""
        return self._current().reason_counts(school)

    def page(self, school: str, query: EventQuery) -> builtins.list[EventRow]:
        """One page of rows, newest first."""
        return self._current().page(school, query)

    def reason_groups(self, school: str) -> builtins.list[ReasonGroup]:
        """Action Required rows grouped by reason."""
        return self._current().reason_groups(school)

    def usage(self, school: str) -> builtins.list[KeyUsage]:
        """Mapping keys in use, with counts and examples."""
        return self._current().usage(school)

    def schools(self) -> builtins.list[str]:
        """Schools with rows."""
        return self._current().schools()

    def schools_with_work(self) -> builtins.list[str]:
        """Schools with rows still to settle."""
        return self._current().schools_with_work()

    def max_tracking_id(self) -> int:
        """The log's head (the fake is never behind)."""
        return int(self.ledger.recorder.max_notification_id() or 0)


@dataclass(frozen=True)
class StoredInvoice:
    """An invoice the fake QBO holds."""

    qbo_id: str
    doc_number: str
    customer_id: str
    total: Decimal
    request_id: str | None


Script = Callable[[InvoiceDraft | PaymentDraft], PushOutcome | None]


@dataclass
class FakeAccountingGateway(AccountingGateway):
    """A QBO stand-in: keeps invoices/payments, replays request ids, answers from a script.

    ``script[event_id]`` is a list of outcome kinds (or callables) consumed one per push;
    ``"landed"`` creates the invoice but answers uncertain (a timeout after sending).
    ``auth_expires_after`` makes every call after N successful creates answer auth_expired.
    When ``ledger`` is set every pushed event's status at call time is kept in ``statuses_at_call``.
    """

    ledger: FlightLedger | None = None
    invoices: dict[str, StoredInvoice] = field(default_factory=dict)
    payments: dict[str, PaymentDraft] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)  # (operation, size)
    lookups: list[str] = field(default_factory=list)
    statuses_at_call: list[str] = field(default_factory=list)
    script: dict[UUID, list[str]] = field(default_factory=dict)
    auth_expires_after: int | None = None
    inactive: set[str] = field(default_factory=set)  # e.g. {"Item:3"}
    _by_request: dict[str, PushOutcome] = field(default_factory=dict)
    _next_id: int = 100

    # --- scripting ----------------------------------------------------------------------------

    def then(self, event_id: UUID, *kinds: str) -> None:
        """Answer the next pushes of one event with these kinds in order."""
        self.script.setdefault(event_id, []).extend(kinds)

    @property
    def invoice_count(self) -> int:
        """How many invoices QBO holds."""
        return len(self.invoices)

    # --- the port -----------------------------------------------------------------------------

    def _note_status(self, event_id: UUID) -> None:
        if self.ledger is not None:
            self.statuses_at_call.append(self.ledger.financial_event(event_id).status.value)

    def _creates(self) -> int:
        return len(self.invoices) + len(self.payments)

    def _auth_expired(self, event_id: UUID) -> PushOutcome | None:
        if self.auth_expires_after is not None and self._creates() >= self.auth_expires_after:
            return PushOutcome(
                event_id=event_id,
                kind=OutcomeKind.ACTION_REQUIRED,
                reason_code=ReasonCode.AUTH_EXPIRED,
                code="invalid_grant",
                message="Incorrect or invalid refresh token",
                http_status=400,
            )
        return None

    def _scripted(self, event_id: UUID) -> str | None:
        queue = self.script.get(event_id)
        return queue.pop(0) if queue else None

    def _create_invoice(self, draft: InvoiceDraft, request_id: str | None) -> PushOutcome:
        existing = next(
            (i for i in self.invoices.values() if i.doc_number == draft.doc_number), None
        )
        if existing is not None:
            return PushOutcome(
                event_id=draft.event_id,
                kind=OutcomeKind.ACTION_REQUIRED,
                reason_code=ReasonCode.DUPLICATE_DOC_NUMBER,
                code="6140",
                message=f"Duplicate Document Number Error: DocNumber={draft.doc_number}",
                http_status=400,
            )
        self._next_id += 1
        qbo_id = str(self._next_id)
        self.invoices[qbo_id] = StoredInvoice(
            qbo_id, draft.doc_number, draft.customer_id, draft.total, request_id
        )
        return PushOutcome(
            event_id=draft.event_id,
            kind=OutcomeKind.SYNCED,
            qbo_id=qbo_id,
            doc_number=draft.doc_number,
        )

    def _invoice(self, draft: InvoiceDraft, *, batched: bool) -> PushOutcome:
        self._note_status(draft.event_id)
        if not batched and draft.request_id in self._by_request:
            return self._by_request[draft.request_id]  # QBO replays the original response
        expired = self._auth_expired(draft.event_id)
        if expired is not None:
            return expired
        scripted = self._scripted(draft.event_id)
        request_id = None if batched else draft.request_id
        if scripted == "landed":
            outcome = self._create_invoice(draft, request_id)
            if request_id is not None:
                self._by_request[request_id] = outcome
            return PushOutcome(
                event_id=draft.event_id,
                kind=OutcomeKind.UNCERTAIN,
                code="timeout",
                message="Read timed out after the request was sent",
            )
        if scripted is not None:
            failure = _failure(draft.event_id, scripted)
            if request_id is not None and failure.kind == OutcomeKind.ACTION_REQUIRED:
                self._by_request[request_id] = failure  # QBO replays a refusal too
            return failure
        outcome = self._create_invoice(draft, request_id)
        if request_id is not None and outcome.kind == OutcomeKind.SYNCED:
            self._by_request[request_id] = outcome
        return outcome

    def _final(self, draft: InvoiceDraft, outcome: PushOutcome) -> PushOutcome:
        """A gateway's final outcome: a 6140 looked up by DocNumber, as QuickBooksGateway does."""
        if outcome.reason_code != ReasonCode.DUPLICATE_DOC_NUMBER:
            return outcome
        found = self.find_invoice(draft.doc_number).found
        return outcome if found is None else found_by_doc_number(draft, found, outcome)

    def push_invoice(self, draft: InvoiceDraft) -> PushOutcome:
        """Create one invoice (request id replay-safe)."""
        self.calls.append(("invoice", 1))
        return self._final(draft, self._invoice(draft, batched=False))

    def push_invoices(self, drafts: Sequence[InvoiceDraft]) -> list[PushOutcome]:
        """Create a batch (no request ids: a DocNumber is the only key)."""
        self.calls.append(("batch", len(drafts)))
        return [self._final(d, self._invoice(d, batched=True)) for d in drafts]

    def push_payment(self, draft: PaymentDraft) -> PushOutcome:
        """Create one payment."""
        self.calls.append(("payment", 1))
        self._note_status(draft.event_id)
        expired = self._auth_expired(draft.event_id)
        if expired is not None:
            return expired
        scripted = self._scripted(draft.event_id)
        if scripted is not None:
            return _failure(draft.event_id, scripted)
        self.payments[draft.request_id] = draft
        return PushOutcome(
            event_id=draft.event_id, kind=OutcomeKind.SYNCED, qbo_id="P" + str(len(self.payments))
        )

    def find_invoice(self, doc_number: str) -> LookupResult:
        """Look an invoice up by DocNumber."""
        self.calls.append(("lookup", 1))
        self.lookups.append(doc_number)
        for invoice in self.invoices.values():
            if invoice.doc_number == doc_number:
                return LookupResult(
                    found=FoundInvoice(
                        invoice.qbo_id, invoice.doc_number, invoice.customer_id, invoice.total
                    )
                )
        return LookupResult()

    def inactive_references(
        self, item_ids: Sequence[str], customer_ids: Sequence[str]
    ) -> frozenset[str] | None:
        """The scripted inactive objects among these ids."""
        self.calls.append(("inactive_lookup", len(item_ids) + len(customer_ids)))
        asked = {f"Item:{i}" for i in item_ids} | {f"Customer:{c}" for c in customer_ids}
        return frozenset(self.inactive & asked)

    def test_connection(self) -> ConnectionCheck:
        """Always connected to the fake company."""
        return ConnectionCheck(ok=True, company=CompanyInfo("Fake Flight School", "US"))


def _failure(event_id: UUID, kind: str) -> PushOutcome:
    if kind == "transient":
        return PushOutcome(
            event_id,
            OutcomeKind.TRANSIENT,
            code="503",
            message="Service Unavailable",
            http_status=503,
        )
    if kind == "throttled":
        return PushOutcome(
            event_id,
            OutcomeKind.TRANSIENT,
            code="3001",
            message="message=ThrottleExceeded; errorCode=003001; statusCode=429",
            http_status=429,
            retry_after=60.0,
            pause_realm=True,
        )
    if kind == "uncertain":
        return PushOutcome(
            event_id,
            OutcomeKind.UNCERTAIN,
            code="10000",
            message="An application error has occurred",
            http_status=500,
        )
    if kind == "validation":
        return PushOutcome(
            event_id,
            OutcomeKind.ACTION_REQUIRED,
            reason_code=ReasonCode.VALIDATION,
            code="6000",
            message="A business validation error has occurred: Amount is invalid",
            http_status=400,
        )
    if kind == "inactive":
        return PushOutcome(
            event_id,
            OutcomeKind.ACTION_REQUIRED,
            reason_code=ReasonCode.INACTIVE_MAPPING,
            code="610",
            message="Object Not Found: Something you're trying to use has been made inactive",
            http_status=400,
        )
    raise ValueError(f"unknown scripted outcome {kind!r}")


# --- building a ready school ------------------------------------------------------------------

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
CHARGES = {"aircraft_rental": "1", "instructor_dual": "2", "ground_instruction": "4"}


def connect(ledger: FlightLedger, school: str = "default", *, days: int = 90) -> None:
    """Record a completed OAuth flow whose refresh token lasts `days`."""
    now = ledger.clock.now()
    connection = ledger.connection(school)
    connection.connect(
        realm="9130350000000001",
        company="Sunrise Flight School",
        country="US",
        access_expires_at=now + timedelta(hours=1),
        refresh_expires_at=now + timedelta(days=days),
        hard_expires_at=None,
        actor="test",
        at=now,
    )
    ledger.save(connection)


def map_everything(
    ledger: FlightLedger,
    school: str = "default",
    *,
    students: Sequence[str] = ("S-7",),
    skip_charge: str | None = None,
    defaults: bool = True,
) -> None:
    """Map the test charge codes, the students, 'card' payments and the defaults."""
    for code, item in CHARGES.items():
        if code != skip_charge:
            ledger.map_charge(school, code, item, operator="test")
    for n, student in enumerate(students, start=1):
        ledger.map_student(school, student, str(n), operator="test")
    ledger.map_payment_type(school, "card", "36", operator="test", payment_method_id="2")
    if defaults:
        ledger.set_defaults(
            school, operator="test", term_id="3", memo="Thank you", income_account_id="79"
        )


def ready_school(ledger: FlightLedger, school: str = "default", **kwargs: object) -> None:
    """Connected and fully mapped."""
    connect(ledger, school)
    map_everything(ledger, school, **kwargs)  # type: ignore[arg-type]


def record_flights(
    ledger: FlightLedger, n: int, school: str = "default", student: str = "S-7", start: int = 1
) -> list[str]:
    """Record n flights F-<i>; returns their flight ids."""
    ids = [f"F-{i}" for i in range(start, start + n)]
    records: list[Record] = [
        parse_line(RecordKind.FLIGHT_ENDED, jsonl([flight(i, student)])) for i in ids
    ]
    ledger.record_batch(school, records, actor="test")
    return ids


def record_payment(
    ledger: FlightLedger, payment_id: str, school: str = "default", **overrides: Any
) -> None:
    """Record one payment."""
    ledger.record(
        school, parse_line(RecordKind.PAYMENT_RECEIVED, jsonl([payment(payment_id, **overrides)]))
    )


class FreeLocks:
    """Realm locks that are always free (one worker), one pass at a time; remembers the
    schools kept between passes (RealmLocks.hold) until released."""

    parallel_passes = 1

    def __init__(self) -> None:
        self.kept: set[str] = set()

    def try_acquire(self, school: str) -> bool:
        """Always owned."""
        self.kept.discard(school)
        return True

    def hold(self, school: str) -> None:
        """Kept after the pass."""
        self.kept.add(school)

    def release(self, school: str) -> None:
        """No longer kept."""
        self.kept.discard(school)

    def close(self) -> None:
        """Nothing held."""
        self.kept.clear()
