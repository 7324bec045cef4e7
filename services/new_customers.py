"""Auto-customers in the push pass: a new student gets a QuickBooks customer before the invoice.

Called once per pass (SyncEngine.run_pass) when the school's auto-customers setting is on, for
the due events whose student has no customer mapping. Per such student, at most one metered read
(a DisplayName lookup; a second only after QBO's "Duplicate Name Exists", which the gateway
reports as `CustomerCreated.duplicate_name`), then
domain.customers.decide: match an active customer, create one, or ask a person
(`ambiguous_customer`). The mapping is recorded on the Mappings aggregate by `system`.

Metered reads: when the school has a cached copy of its QuickBooks lists (workers/qbo_lists.py)
the customers are matched against it without any read; a name the cache does not hold is created
straight away (a customer added in QuickBooks since the last refresh comes back as Duplicate
Name Exists and is then looked up). A created customer is added to the cache. Without a cache:
one DisplayName lookup per new student.

Never a duplicate customer: CustomerCreateStarted (with a requestid derived from school +
student) is recorded before the create is sent. A crash, timeout or 5xx after that leaves the
create unsettled; the next pass looks the name up first (the customer is found if QBO made it)
and only then sends the create again, with the same requestid, which QBO answers by replaying
the original response.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from uuid import UUID

import structlog
from eventsourcing.persistence import IntegrityError
from structlog.contextvars import bound_contextvars

from domain.application import SYSTEM, FlightLedger
from domain.customers import (
    CREATED,
    MATCHED,
    Ambiguous,
    Create,
    CustomerCandidate,
    CustomerDirectory,
    CustomerDraft,
    KnownCustomers,
    Match,
    NewStudent,
    decide,
    name_taken,
    new_students,
)
from domain.financial_event import FinancialEvent
from domain.ids import customer_request_id
from domain.mappings import Mappings
from domain.ports import (
    AccountingGateway,
    OutcomeKind,
    PushOutcome,
    QboListCache,
    ReasonCode,
)
from domain.qbo_lists import CUSTOMER, QboLists, QboObject
from services.push_run import AUTH_STOP_REASONS, PassHost, PassReport, PushRun

log = structlog.get_logger(__name__)

NO_EVENT = UUID(int=0)
RECHECKED = "QuickBooks is checked by name before the customer is created again"


def resolve_new_students(
    engine: PassHost,
    school: str,
    due: Sequence[FinancialEvent],
    mappings: Mappings,
    report: PassReport,
) -> tuple[list[FinancialEvent], Mappings] | None:
    """Map every new student of the due events; (events that go on, mappings) or None when
    QuickBooks cannot be used (every waiting event then says why)."""
    students = new_students(due, mappings)
    if not students:
        return list(due), mappings
    gateway = engine.usable_gateway(school, due, report)
    if gateway is None:
        return None
    if not isinstance(gateway, CustomerDirectory):  # cannot look customers up: as if off
        return list(due), mappings
    step = _Resolver(engine, school, mappings, report, gateway, gateway, engine.known_customers)
    held: set[str] = set()
    for student in students.values():
        held.add(student.id)
        if step.run.halted:  # paused (429): the rest waits for the next pass
            continue
        outcome = step.resolve(student)
        if outcome is None:
            held.discard(student.id)
            continue
        events = [e for e in due if e.student_id == student.id]
        if outcome.kind == OutcomeKind.ACTION_REQUIRED and outcome.reason_code in AUTH_STOP_REASONS:
            step.run.stop(due, outcome)
            return None
        step.run.record_failure(events, outcome)
    return [e for e in due if e.student_id not in held], step.mappings


class _Resolver:
    """The calls and records for one pass's new students."""

    def __init__(
        self,
        engine: PassHost,
        school: str,
        mappings: Mappings,
        report: PassReport,
        gateway: AccountingGateway,
        directory: CustomerDirectory,
        known: KnownCustomers | None = None,
    ) -> None:
        self.known = known
        self._cached: Sequence[CustomerCandidate] | bool | None = False  # False: not read yet
        self.engine = engine
        self.school = school
        self.mappings = mappings
        self.report = report
        self.gateway = directory
        self.run = PushRun(engine, school, mappings, report, gateway)

    def cached(self) -> Sequence[CustomerCandidate] | None:
        """The cached customers (read once per pass), or None without a cache."""
        if self._cached is False:
            self._cached = self.known.customers(self.school) if self.known else None
        return None if isinstance(self._cached, bool) else self._cached

    def resolve(self, student: NewStudent) -> PushOutcome | None:
        """Map the student (None), or the outcome its events get."""
        cached = None if student.id in self.mappings.customer_creates else self.cached()
        if cached is not None:  # no read: a stale cache is caught by Duplicate Name or the push
            decision = decide(student, cached)
            if isinstance(decision, Match):
                self._map(student, decision.customer, MATCHED)
                return None
            if isinstance(decision, Create):
                return self._create(student)
            # ambiguous in the cache: ask QuickBooks itself before a person is asked
        self.report.calls += 1
        lookup = self.gateway.find_customers(student.name)
        if lookup.failure is not None:
            return _in_context(
                lookup.failure, f"Looking up QuickBooks customers named '{student.name}'"
            )
        decision = decide(student, lookup.candidates)
        if isinstance(decision, Match):
            self._map(student, decision.customer, MATCHED)
            return None
        if isinstance(decision, Ambiguous):
            return _ambiguous(student, decision)
        return self._create(student)

    def _create(self, student: NewStudent) -> PushOutcome | None:
        draft = CustomerDraft(
            student_id=student.id,
            display_name=student.name,
            email=student.email,
            request_id=customer_request_id(self.school, student.id),
        )
        now = self.engine.now()
        started = self._save(
            student,
            lambda m: m.start_customer_create(
                student.id,
                request_id=draft.request_id,
                display_name=draft.display_name,
                email=draft.email,
                operator=SYSTEM,
                at=now,
            ),
        )
        if not started:  # a person mapped the student meanwhile
            return None
        self.report.calls += 1
        with bound_contextvars(student=student.id, request_id=draft.request_id):
            created = self.gateway.create_customer(draft)
        if created.customer is not None:
            self._map(student, created.customer, CREATED)
            if self.known is not None:
                self.known.remember(self.school, created.customer)
            return None
        failure = created.failure
        assert failure is not None
        if not created.duplicate_name:
            lead = f"Creating a QuickBooks customer for new student {student.id} '{student.name}'"
            return _in_context(failure, lead)
        self.report.calls += 1  # Duplicate Name: someone holds it; an active customer?
        again = self.gateway.find_customers(student.name)
        if again.failure is not None:
            return _in_context(
                again.failure, f"Looking up QuickBooks customers named '{student.name}'"
            )
        decision = decide(student, again.candidates)
        if isinstance(decision, Match):
            self._map(student, decision.customer, MATCHED)
            return None
        if isinstance(decision, Create):
            decision = name_taken(student, failure.message)
        return _ambiguous(student, decision)

    def _map(self, student: NewStudent, customer: CustomerCandidate, how: str) -> None:
        now = self.engine.now()
        self._save(
            student,
            lambda m: m.auto_map_student(
                student.id,
                customer.id,
                how=how,
                display_name=customer.display_name,
                operator=SYSTEM,
                at=now,
            ),
        )
        log.info(
            "customer_auto_mapped",
            student=student.id,
            customer=customer.id,
            how=how,
        )

    def _save(self, student: NewStudent, change: Callable[[Mappings], None]) -> bool:
        """Apply and save one change; after a concurrent change re-read once. False when the
        student is mapped by then (a person's mapping wins)."""
        for attempt in (1, 2):
            if student.id in self.mappings.students:
                return False
            change(self.mappings)
            try:
                if self.mappings.pending_events:
                    self.engine.ledger.save(self.mappings)
                return True
            except IntegrityError:
                self.mappings = self.engine.ledger.mappings(self.school)
                self.run.mappings = self.mappings
                if attempt == 2:
                    raise
        return False  # pragma: no cover - the loop returns or raises


class CachedCustomers:
    """KnownCustomers over the cached QuickBooks lists of the school's current realm."""

    def __init__(self, ledger: FlightLedger, store: QboListCache) -> None:
        self.ledger = ledger
        self.store = store

    def lists(self, school: str) -> QboLists | None:
        """The cached lists of the school's current realm; None when never read."""
        realm = self.ledger.connection(school).realm
        return self.store.get(school, realm) if realm else None

    def customers(self, school: str) -> Sequence[CustomerCandidate] | None:
        """The cached customers, active or not; None when the realm's lists were never read."""
        lists = self.lists(school)
        if lists is None:
            return None
        return [CustomerCandidate(o.id, o.name, o.email, o.active) for o in lists.of(CUSTOMER)]

    def remember(self, school: str, customer: CustomerCandidate) -> None:
        """Add a customer auto-customers created (so it can be picked without a refresh)."""
        realm = self.ledger.connection(school).realm
        if realm:
            obj = QboObject(CUSTOMER, customer.id, customer.display_name, customer.active)
            self.store.add(school, realm, replace(obj, email=customer.email))


def _ambiguous(student: NewStudent, decision: Ambiguous) -> PushOutcome:
    return PushOutcome(
        event_id=NO_EVENT,
        kind=OutcomeKind.ACTION_REQUIRED,
        reason_code=ReasonCode.AMBIGUOUS_CUSTOMER,
        message=decision.message,
        missing=(f"student:{student.id}",),
    )


def _in_context(outcome: PushOutcome, lead: str) -> PushOutcome:
    """QuickBooks' answer, said of the customer step; auth failures pass unchanged (they stop
    the pass). A create that may have landed is not the invoice's uncertainty: it retries."""
    if outcome.kind == OutcomeKind.ACTION_REQUIRED and outcome.reason_code in AUTH_STOP_REASONS:
        return outcome
    text = outcome.message.strip() or "QuickBooks gave no message"
    if outcome.kind == OutcomeKind.UNCERTAIN:
        return replace(outcome, kind=OutcomeKind.TRANSIENT, message=f"{lead}: {text}; {RECHECKED}")
    return replace(outcome, message=f"{lead}: {text}")
