"""The flightledger eventsourcing Application: every use case that appends to the log."""

from __future__ import annotations

import contextlib
import copy
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, JSONTranscoder, StoredEvent, Transcoding

from domain.api_keys import ApiKey, ApiKeys, key_text, split_key
from domain.connection import Connection
from domain.financial_event import FinancialEvent, NotFound, Status, TransitionRefused
from domain.ids import (
    api_keys_id,
    check_school,
    connection_id,
    financial_event_id,
    mappings_id,
    settings_id,
    webhooks_id,
)
from domain.mapping_check import MappingProblem
from domain.mappings import Mappings
from domain.ports import BulkEventReads, BulkLookups, Clock
from domain.records import (
    CREATION_KINDS,
    Correction,
    FlightAmendedRecord,
    FlightCancelledRecord,
    Record,
    RecordError,
    RecordKind,
    UnknownRecord,
    record_to_data,
)
from domain.retry import RetryResult, blocked_by, retry_context
from domain.settings import Settings
from domain.webhooks import Subscription, Webhooks

SYSTEM = "system"
_A = TypeVar("_A", Connection, Mappings, Settings, ApiKeys, Webhooks)
APPLICATION_NAME = "flightledger"


_CREATION_EVENTS: dict[RecordKind, type[FinancialEvent.Recorded]] = {
    RecordKind.FLIGHT_ENDED: FinancialEvent.FlightEnded,
    RecordKind.INVOICE_REQUESTED: FinancialEvent.InvoiceRequested,
    RecordKind.PAYMENT_RECEIVED: FinancialEvent.PaymentReceived,
}
_ALL_CREATION_EVENTS: tuple[type[FinancialEvent.Recorded], ...] = (
    *_CREATION_EVENTS.values(),
    FinancialEvent.PaymentRefunded,
)


def recorded_fields(school: str, record: Record, actor: str) -> dict[str, Any]:
    """The fields of a record's creation event (FinancialEvent.Recorded's, by name): the one
    place they are built, for the aggregate (new_financial_event) and bulk import alike."""
    return {
        "school": school,
        "kind": RecordKind(record.kind).value,
        "reference": record.source_id,
        "student_id": record.student.id,
        "student_name": record.student.name,
        "amount": record.total,
        "currency": record.currency,
        "data": record_to_data(record),
        "actor": actor,
    }


class DateAsISO(Transcoding):
    """Transcoding for datetime.date (the library registers only datetime)."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        """ISO date."""
        return obj.isoformat()

    def decode(self, data: str) -> date:
        """Parse an ISO date."""
        return date.fromisoformat(data)


class SystemClock:
    """The real time in UTC."""

    def now(self) -> datetime:
        """Aware UTC now."""
        return datetime.now(UTC)


@dataclass(frozen=True)
class BatchResult:
    """How a batch of records went."""

    recorded: int
    duplicates: int


@dataclass(frozen=True)
class PassReads:
    """A school's aggregates as one push pass reads them (FlightLedger.pass_reads)."""

    settings: Settings
    connection: Connection
    mappings: Mappings
    events: dict[UUID, FinancialEvent]


@dataclass(frozen=True)
class HistoryEntry:
    """One event of an aggregate's history, as an auditor reads it."""

    position: int  # the event's number within its aggregate: 1, 2, 3 ...
    at: datetime
    type: str
    actor: str
    data: dict[str, Any]
    log_position: int | None = None  # its position in the whole log (as in `audit export`)


class FlightLedger(Application[UUID]):
    """The log of financial facts for every school, and the use cases that append to it."""

    name = APPLICATION_NAME

    def __init__(self, env: dict[str, str] | None = None, clock: Clock | None = None) -> None:
        super().__init__(env)
        self.clock: Clock = clock or SystemClock()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """UUID, Decimal, datetime (library) plus date."""
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    def _now(self, at: datetime | None) -> datetime:
        return at or self.clock.now()

    # --- recording facts ----------------------------------------------------------------------

    def new_financial_event(
        self, school: str, record: Record, *, actor: str, at: datetime | None = None
    ) -> FinancialEvent:
        """Build (not save) the aggregate for one record."""
        check_school(school)
        kind = RecordKind(record.kind)
        return FinancialEvent._create(
            _CREATION_EVENTS[kind],
            id=financial_event_id(school, kind.value, record.source_id),
            timestamp=self._now(at),
            **recorded_fields(school, record, actor),
        )

    def new_creation_event(
        self, school: str, record: Record, *, actor: str, at: datetime
    ) -> DomainEventProtocol[UUID]:
        """The creation event alone, for bulk import (no aggregate object is built)."""
        kind = RecordKind(record.kind)
        event_class: Any = _CREATION_EVENTS[kind]  # fields come from the dataclass subclass
        created: DomainEventProtocol[UUID] = event_class(
            originator_id=financial_event_id(school, kind.value, record.source_id),
            originator_version=1,
            originator_topic=_FINANCIAL_EVENT_TOPIC,
            timestamp=at,
            **recorded_fields(school, record, actor),
        )
        return created

    def record(
        self, school: str, record: Record, *, actor: str = SYSTEM, at: datetime | None = None
    ) -> bool:
        """Append one fact; False (nothing appended) when it was recorded before."""
        event = self.new_financial_event(school, record, actor=actor, at=at)
        try:
            self.save(event)
        except IntegrityError:
            return False
        return True

    def record_batch(
        self,
        school: str,
        records: Sequence[Record],
        *,
        actor: str = SYSTEM,
        at: datetime | None = None,
    ) -> BatchResult:
        """Append many facts in one transaction; duplicates are counted, not appended."""
        check_school(school)
        when = self._now(at)
        events: dict[UUID, DomainEventProtocol[UUID]] = {}
        for record in records:
            event = self.new_creation_event(school, record, actor=actor, at=when)
            events.setdefault(event.originator_id, event)
        to_stored_event = self.mapper.to_stored_event
        result = self._store_new([to_stored_event(e) for e in events.values()])
        return BatchResult(result.recorded, result.duplicates + len(records) - len(events))

    def _store_new(self, stored_events: Sequence[StoredEvent]) -> BatchResult:
        """Insert encoded creation events in one transaction, skipping those already recorded.

        The first event of each originator id is kept (later ones count as duplicates), as are
        ids already in the log; a concurrent writer is handled by re-checking and retrying (an
        IntegrityError writes nothing). Bulk import calls this with events encoded elsewhere.
        """
        unique: dict[UUID | str, StoredEvent] = {}
        for stored in stored_events:
            unique.setdefault(stored.originator_id, stored)
        pending = list(unique.values())
        existing: set[UUID | str] = set()
        for _ in range(3):  # a concurrent writer may record some of them between check and save
            try:
                if pending:
                    self.recorder.insert_events(pending)
                break
            except IntegrityError:  # nothing of this batch was written: drop the recorded ones
                ids = [e.originator_id for e in pending]
                existing |= self._exists([i if isinstance(i, UUID) else UUID(i) for i in ids])
                pending = [e for e in pending if e.originator_id not in existing]
        else:
            raise IntegrityError("the batch kept conflicting with concurrent writers")
        return BatchResult(len(pending), len(stored_events) - len(unique) + len(existing))

    def _exists(self, aggregate_ids: list[UUID]) -> set[UUID | str]:
        """Which of these aggregates are already in the log (bulk when the recorder can)."""
        if isinstance(self.recorder, BulkLookups):
            return set(self.recorder.existing_originator_ids(aggregate_ids))
        return {i for i in aggregate_ids if self.recorder.select_events(i, limit=1)}

    # --- corrections --------------------------------------------------------------------------

    def record_correction(
        self, school: str, record: Correction, *, actor: str = SYSTEM, at: datetime | None = None
    ) -> bool:
        """Append a correction as a new fact; False (nothing appended) when it changes nothing.

        Raises RecordError naming the field when it cannot apply (unknown flight or payment,
        a flight being sent right now, refunds above the payment). A concurrent writer (the
        worker recording a push) is handled by re-reading and trying again.
        """
        check_school(school)
        for _ in range(5):
            try:
                return self._record_correction(school, record, actor, self._now(at))
            except IntegrityError:
                continue
        raise RecordError("record", "the flight kept changing while recording; try again")

    def _load_source(self, school: str, kind: RecordKind, ref: str, field: str) -> FinancialEvent:
        try:
            aggregate: object = self.repository.get(financial_event_id(school, kind.value, ref))
        except AggregateNotFoundError:
            what = "flight" if kind == RecordKind.FLIGHT_ENDED else "payment"
            raise UnknownRecord(field, f"no {what} {ref!r} has been recorded") from None
        assert isinstance(aggregate, FinancialEvent)
        return aggregate

    def _record_correction(
        self, school: str, record: Correction, actor: str, when: datetime
    ) -> bool:
        if isinstance(record, FlightAmendedRecord):
            flight = self._load_source(
                school, RecordKind.FLIGHT_ENDED, record.flight.flight_id, "flight_id"
            )
            try:
                changed = flight.amend(
                    data=record_to_data(record.flight),
                    amount=record.flight.total,
                    student_id=record.flight.student.id,
                    student_name=record.flight.student.name,
                    currency=record.flight.currency,
                    reason=record.reason or "",
                    actor=actor,
                    at=when,
                )
            except TransitionRefused as exc:
                raise _refusal("flight_id", exc) from None
            if changed:
                self.save(flight)
            return changed
        if isinstance(record, FlightCancelledRecord):
            flight = self._load_source(
                school, RecordKind.FLIGHT_ENDED, record.flight_id, "flight_id"
            )
            try:
                changed = flight.cancel(reason=record.reason, actor=actor, at=when)
            except TransitionRefused as exc:
                raise _refusal("flight_id", exc) from None
            if changed:
                self.save(flight)
            return changed
        payment = self._load_source(
            school, RecordKind.PAYMENT_RECEIVED, record.payment_id, "payment_id"
        )
        refund_id = financial_event_id(school, RecordKind.PAYMENT_REFUNDED.value, record.refund_id)
        if self._exists([refund_id]):
            return False
        if record.currency != payment.currency:
            raise RecordError(
                "currency",
                f"payment {payment.reference} is in {payment.currency}, not {record.currency}",
            )
        try:
            payment.note_refund(
                refund_id=record.refund_id, amount=record.amount, actor=actor, at=when
            )
        except TransitionRefused as exc:
            raise _refusal("amount", exc) from None
        refund = FinancialEvent._create(
            FinancialEvent.PaymentRefunded,
            id=refund_id,
            timestamp=when,
            school=school,
            kind=RecordKind.PAYMENT_REFUNDED.value,
            reference=record.refund_id,
            student_id=payment.student_id,
            student_name=payment.student_name,
            amount=record.amount,
            currency=record.currency,
            data={
                "refund_id": record.refund_id,
                "payment_id": record.payment_id,
                "refunded_at": record.refunded_at,
                "amount": record.amount,
                "currency": record.currency,
                "reason": record.reason,
                "payment_type": payment.data["payment_type"],
            },
            actor=actor,
        )
        self.save(refund, payment)
        return True

    # --- reading ------------------------------------------------------------------------------

    def financial_event(self, event_id: UUID) -> FinancialEvent:
        """One financial event by id."""
        aggregate: FinancialEvent = self.repository.get(event_id)
        return aggregate

    def aggregates(self, ids: Iterable[UUID]) -> dict[UUID, Any]:
        """The aggregates of these ids that are in the log (the others left out), each as
        repository.get gives it (a copy of the cached one brought up to date, or rebuilt).

        With a fast-forwarding cache and a recorder that reads many aggregates at once
        (BulkEventReads), one query for them all instead of one each.
        """
        wanted = list(dict.fromkeys(ids))
        repository = self.repository
        cache = repository.cache
        recorder = self.recorder
        if not isinstance(recorder, BulkEventReads) or cache is None or not repository.fastforward:
            found: dict[UUID, Any] = {}
            for aggregate_id in wanted:
                with contextlib.suppress(AggregateNotFoundError):
                    found[aggregate_id] = repository.get(aggregate_id)
            return found
        cached: dict[UUID, Any] = {}
        for aggregate_id in wanted:
            with contextlib.suppress(KeyError):
                cached[aggregate_id] = cache.get(aggregate_id)
        floors = [(i, cached[i].version if i in cached else 0) for i in wanted]
        new: dict[UUID, list[Any]] = {}
        for stored in recorder.select_events_after(floors):
            key = stored.originator_id
            key = key if isinstance(key, UUID) else UUID(str(key))
            new.setdefault(key, []).append(self.mapper.to_domain_event(stored))
        found = {}
        for aggregate_id in wanted:
            aggregate = cached.get(aggregate_id)
            events = new.get(aggregate_id, [])
            if events:
                # the cached object may be read by another thread: brought up to date as a copy
                aggregate = copy.deepcopy(aggregate)
                for event in events:
                    if aggregate is None or event.originator_version > aggregate.version:
                        aggregate = event.mutate(aggregate)
                cache.put(aggregate_id, aggregate)
            if aggregate is None:
                continue
            found[aggregate_id] = (
                copy.deepcopy(aggregate) if repository.deepcopy_from_cache else aggregate
            )
        return found

    def pass_reads(self, school: str, event_ids: Iterable[UUID]) -> PassReads:
        """What a push pass reads of the log, read together (`aggregates`): the school's
        settings, connection and mappings (new unsaved ones if it has none) and these events."""
        ids = [settings_id(school), connection_id(school), mappings_id(school)]
        found = self.aggregates([*ids, *event_ids])
        settings = found.pop(ids[0], None)
        connection = found.pop(ids[1], None)
        mappings = found.pop(ids[2], None)
        events = {k: v for k, v in found.items() if isinstance(v, FinancialEvent)}
        if not isinstance(settings, Settings):
            settings = self._new_per_school(Settings, Settings.Started, settings_id, school)
        if not isinstance(connection, Connection):
            connection = self._new_per_school(
                Connection, Connection.Registered, connection_id, school
            )
        if not isinstance(mappings, Mappings):
            mappings = self._new_per_school(Mappings, Mappings.Started, mappings_id, school)
        return PassReads(settings, connection, mappings, events)

    def find(self, school: str, ref: str) -> FinancialEvent:
        """Resolve REF (event id, flight id, request id or payment id) within a school."""
        candidates: list[UUID] = []
        with contextlib.suppress(ValueError):
            candidates.append(UUID(ref))
        kinds = (*CREATION_KINDS, RecordKind.PAYMENT_REFUNDED)
        candidates.extend(financial_event_id(school, k.value, ref) for k in kinds)
        for candidate in candidates:
            try:
                aggregate: object = self.repository.get(candidate)
            except AggregateNotFoundError:
                continue
            if isinstance(aggregate, FinancialEvent) and aggregate.school == school:
                return aggregate
        raise NotFound(f"no financial event {ref!r} in school {school!r}")

    def _per_school(
        self, cls: type[_A], created: type[Any], aggregate_id: Callable[[str], UUID], school: str
    ) -> _A:
        """The school's one aggregate of a kind, or a new unsaved one if it has none yet."""
        try:
            aggregate: _A = self.repository.get(aggregate_id(school))
        except AggregateNotFoundError:
            aggregate = self._new_per_school(cls, created, aggregate_id, school)
        return aggregate

    def _new_per_school(
        self, cls: type[_A], created: type[Any], aggregate_id: Callable[[str], UUID], school: str
    ) -> _A:
        """A new, unsaved per-school aggregate (the school has none in the log yet)."""
        return cls._create(
            created,
            id=aggregate_id(check_school(school)),
            school=school,
            timestamp=self.clock.now(),
        )

    def connection(self, school: str) -> Connection:
        """The school's connection (a new, unsaved one if never registered)."""
        return self._per_school(Connection, Connection.Registered, connection_id, school)

    def mappings(self, school: str) -> Mappings:
        """The school's mappings (new, unsaved, empty if never set)."""
        return self._per_school(Mappings, Mappings.Started, mappings_id, school)

    def settings(self, school: str) -> Settings:
        """The school's settings (defaults if never set)."""
        return self._per_school(Settings, Settings.Started, settings_id, school)

    def history(self, school: str, ref: str) -> list[HistoryEntry]:
        """Every event of one financial event (or 'connection', 'mappings', 'settings')."""
        special = {"connection": connection_id, "mappings": mappings_id, "settings": settings_id}
        aggregate_id = special[ref](school) if ref in special else self.find(school, ref).id
        positions: dict[int, int] = {}
        if isinstance(self.recorder, BulkLookups):
            positions = self.recorder.log_positions(aggregate_id)
        return [
            _history_entry(e, positions.get(e.originator_version))
            for e in self.events.get(aggregate_id)
        ]

    def iter_financial_events(self, school: str | None = None) -> Iterable[FinancialEvent]:
        """Every financial event in the log (of one school), rebuilt from the log in bulk."""
        start = 1
        ids: dict[UUID, None] = {}
        while True:
            page = self.recorder.select_notifications(
                start=start, limit=5000, topics=_CREATION_TOPICS
            )
            if not page:
                break
            for notification in page:
                ids[UUID(str(notification.originator_id))] = None
            start = page[-1].id + 1
        for aggregate_id in ids:
            event = self.financial_event(aggregate_id)
            if school is None or event.school == school:
                yield event

    def mapping_problems(
        self, school: str, events: Iterable[FinancialEvent] | None = None
    ) -> list[MappingProblem]:
        """Keys referenced by unsent events that are unmapped or mapped inactive.

        `events` are the candidates (e.g. the unsent ones picked through the view); without
        them the whole log is replayed.
        """
        from domain.preflight import missing_keys

        mappings = self.mappings(school)
        found: dict[tuple[str, str], list[str]] = {}
        candidates = self.iter_financial_events(school) if events is None else events
        for event in candidates:
            if event.school != school or event.status in (Status.SYNCED, Status.DISMISSED):
                continue
            missing, inactive = missing_keys(event, mappings)
            for key in missing:
                if not key.startswith("default:"):
                    found.setdefault((key, "missing"), []).append(event.reference)
            for key in inactive:
                found.setdefault((key, "inactive"), []).append(event.reference)
        return [
            MappingProblem(key=key, state=state, used_by=refs[:20], count=len(refs))
            for (key, state), refs in sorted(found.items())
        ]

    # --- mappings and settings ----------------------------------------------------------------

    def map_charge(
        self, school: str, code: str, item_id: str, *, operator: str, active: bool = True
    ) -> None:
        """Map a charge code to a QBO Item."""
        mappings = self.mappings(school)
        mappings.map_charge(code, item_id, active=active, operator=operator, at=self.clock.now())
        self.save(mappings)

    def map_student(self, school: str, student_id: str, customer_id: str, *, operator: str) -> None:
        """Map a student to a QBO Customer."""
        mappings = self.mappings(school)
        mappings.map_student(student_id, customer_id, operator=operator, at=self.clock.now())
        self.save(mappings)

    def map_payment_type(
        self,
        school: str,
        name: str,
        deposit_account_id: str,
        *,
        operator: str,
        active: bool = True,
        payment_method_id: str | None = None,
    ) -> None:
        """Map a payment type to a deposit account."""
        mappings = self.mappings(school)
        mappings.map_payment_type(
            name,
            deposit_account_id,
            payment_method_id=payment_method_id,
            active=active,
            operator=operator,
            at=self.clock.now(),
        )
        self.save(mappings)

    def set_defaults(
        self,
        school: str,
        *,
        operator: str,
        term_id: str | None = None,
        memo: str | None = None,
        income_account_id: str | None = None,
    ) -> None:
        """Set invoice defaults; unspecified ones are kept."""
        mappings = self.mappings(school)
        mappings.set_defaults(
            term_id=term_id,
            memo=memo,
            income_account_id=income_account_id,
            operator=operator,
            at=self.clock.now(),
        )
        self.save(mappings)

    def set_auto_invoice(self, school: str, enabled: bool, *, operator: str) -> None:
        """Switch auto-invoicing on or off."""
        settings = self.settings(school)
        settings.set_auto_invoice(enabled, operator=operator, at=self.clock.now())
        self.save(settings)

    def set_auto_customers(self, school: str, enabled: bool, *, operator: str) -> None:
        """Switch auto-customers (match or create a customer for a new student) on or off."""
        settings = self.settings(school)
        settings.set_auto_customers(enabled, operator=operator, at=self.clock.now())
        self.save(settings)

    # --- API keys -----------------------------------------------------------------------------

    def api_keys(self, school: str) -> ApiKeys:
        """The school's key ring (new, unsaved, empty if no key was ever made)."""
        return self._per_school(ApiKeys, ApiKeys.Started, api_keys_id, school)

    def create_api_key(
        self, school: str, *, name: str, permissions: Iterable[str], operator: str
    ) -> tuple[ApiKey, str]:
        """Make a key; returns it and its full text (shown once, only its hash is kept)."""
        ring = self.api_keys(school)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = ring.create_key(
            key_id=key_id,
            name=name,
            secret=secret,
            permissions=permissions,
            operator=operator,
            at=self.clock.now(),
        )
        self.save(ring)
        return key, key_text(school, key_id, secret)

    def revoke_api_key(self, school: str, key_id: str, *, operator: str) -> None:
        """Revoke a key of the school: refused from the next request on."""
        ring = self.api_keys(school)
        ring.revoke(key_id, operator=operator, at=self.clock.now())
        self.save(ring)

    def authenticate_key(self, text: str) -> ApiKey | None:
        """The active key this text is, read from the log now (so revocation is immediate)."""
        parts = split_key(text)
        if parts is None:
            return None
        school, key_id, secret = parts
        try:
            check_school(school)
            ring: ApiKeys = self.repository.get(api_keys_id(school))
        except (ValueError, AggregateNotFoundError):
            return None
        return ring.match(key_id, secret)

    # --- webhooks -------------------------------------------------------------------------------

    def webhooks(self, school: str) -> Webhooks:
        """The school's webhook subscriptions (new, unsaved, empty if none)."""
        return self._per_school(Webhooks, Webhooks.Started, webhooks_id, school)

    def subscribe_webhook(
        self, school: str, *, url: str, events: list[str], operator: str
    ) -> Subscription:
        """Add a subscription (the caller keeps its secret in the vault)."""
        hooks = self.webhooks(school)
        sub = hooks.subscribe(
            "wh_" + secrets.token_hex(8), url, events, operator=operator, at=self.clock.now()
        )
        self.save(hooks)
        return sub

    def unsubscribe_webhook(self, school: str, subscription_id: str, *, operator: str) -> bool:
        """Delete a subscription; False when the school has none by that id."""
        hooks = self.webhooks(school)
        if not hooks.unsubscribe(subscription_id, operator=operator, at=self.clock.now()):
            return False
        self.save(hooks)
        return True

    # --- operator actions ---------------------------------------------------------------------

    def retry_failed(
        self,
        school: str,
        events: Iterable[FinancialEvent],
        *,
        operator: str,
        scope: str,
        qbo_lists: Callable[[], Any] | None = None,
    ) -> RetryResult:
        """Requeue the given events whose cause is fixed, all in one transaction.

        `qbo_lists` returns the school's QuickBooks lists (domain.qbo_lists.QboLists, read
        again) or None; it is called at most once, only when an event waits on an inactive or
        missing QuickBooks object, so Retry Failed can refuse until QuickBooks says it is fixed.
        """
        now = self.clock.now()
        context = retry_context(
            school,
            self.connection(school),
            self.mappings(school),
            now,
            auto_customers=self.settings(school).auto_customers,
            qbo_lists=_once(qbo_lists) if qbo_lists is not None else None,
        )
        result = RetryResult()
        blocked: dict[tuple[str, str], int] = {}
        to_save: list[FinancialEvent] = []
        for event in events:
            if event.school != school:
                continue
            if event.status not in (Status.FAILED, Status.ACTION_REQUIRED, Status.UNCERTAIN):
                result.skipped += 1
                continue
            why = blocked_by(event, context)
            if why is not None:
                blocked[why] = blocked.get(why, 0) + 1
                continue
            if event.request_retry(operator=operator, scope=scope, at=now):
                to_save.append(event)
                result.requeued_ids.append(event.id)
        if to_save:
            self.save(*to_save)
        result.requeued = len(to_save)
        result.blocked = [
            {"reason_code": code, "why": why, "count": str(n)}
            for (code, why), n in sorted(blocked.items())
        ]
        return result

    def dismiss(self, school: str, ref: str, *, operator: str, note: str) -> FinancialEvent:
        """Stop one event from being sent."""
        if not note.strip():
            raise TransitionRefused("note: a reason for dismissing is required")
        event = self.find(school, ref)
        event.dismiss(operator=operator, note=note, at=self.clock.now())
        self.save(event)
        return event


_FINANCIAL_EVENT_TOPIC = f"{FinancialEvent.__module__}:{FinancialEvent.__qualname__}"
_CREATION_TOPICS = [f"{cls.__module__}:{cls.__qualname__}" for cls in _ALL_CREATION_EVENTS]
_ACTOR_FIELDS = ("actor", "operator")
_BASE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def _once(func: Callable[[], Any]) -> Callable[[], Any]:
    """func, called at most once (its answer kept)."""
    kept: list[Any] = []

    def call() -> Any:
        if not kept:
            kept.append(func())
        return kept[0]

    return call


def _refusal(field: str, exc: TransitionRefused) -> RecordError:
    """A refused correction as a record error naming the field ("currency: ..." names its own)."""
    text = str(exc)
    name, sep, rest = text.partition(": ")
    if sep and name.isidentifier():
        return RecordError(name, rest)
    return RecordError(field, text)


def _history_entry(event: Any, log_position: int | None = None) -> HistoryEntry:
    state = {k: v for k, v in vars(event).items() if k not in _BASE_FIELDS}
    if isinstance(event, FinancialEvent.Recorded):  # the validated input, under its own name
        state["record"] = state.pop("data")
    actor = next((str(state[k]) for k in _ACTOR_FIELDS if k in state), SYSTEM)
    return HistoryEntry(
        position=event.originator_version,
        at=event.timestamp,
        type=type(event).__name__,
        actor=actor,
        data={k: v for k, v in state.items() if k not in _ACTOR_FIELDS},
        log_position=log_position,
    )
