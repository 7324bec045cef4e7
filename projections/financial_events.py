"""The financial-event projection: domain events in, view rows out (pure, no I/O)."""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Notification,
)
from eventsourcing.utils import get_topic, resolve_topic

from domain.financial_event import STATUS_AFTER_FAILURE, FinancialEvent, Status
from domain.mapping_check import keys_used
from projections.view import (
    ROW_COLUMNS,
    UNSETTLED_STATUSES,
    EventQuery,
    EventRow,
    KeyUsage,
    ReasonGroup,
)

FINANCIAL_EVENT_TOPIC_PREFIX = f"{FinancialEvent.__module__}:{FinancialEvent.__qualname__}."
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)

# domain.financial_event.STATUS_AFTER_FAILURE keyed by the stored strings (the fast path's).
_FAILED_STATUS = {c.value: s.value for c, s in STATUS_AFTER_FAILURE.items()}

Change = tuple[int, Any]  # (log position, decoded domain event)


class UnreadableEvent(ValueError):
    """A stored event the projection cannot decode: the projector stops on it."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"log position {position} cannot be read: {reason}")
        self.position = position
        self.reason = reason


def is_financial_topic(topic: str) -> bool:
    """True when a stored event's topic is one of FinancialEvent's events."""
    return topic.startswith(FINANCIAL_EVENT_TOPIC_PREFIX)


def is_creation(event: object) -> bool:
    """True for FlightEnded / InvoiceRequested / PaymentReceived."""
    return isinstance(event, FinancialEvent.Recorded)


def apply_event(row: EventRow | None, event: Any, position: int) -> EventRow | None:
    """The row after one event (None when the event is not a financial event's, or unknown)."""
    at: datetime = event.timestamp
    if isinstance(event, FinancialEvent.Recorded):
        created = compact_event(event)
        return None if created is None else row_from_raw(new_raw_row(created, position))
    if row is None:
        return None
    if isinstance(event, FinancialEvent.PushStarted):
        return replace(
            row,
            status=Status.SYNCING.value,
            attempts=event.attempt,
            doc_number=event.doc_number,
            updated_at=at,
        )
    if isinstance(event, FinancialEvent.Synced):
        return replace(
            row,
            status=Status.SYNCED.value,
            qbo_id=event.qbo_id,
            doc_number=event.doc_number,
            reason_code=None,
            reason="",
            missing=(),
            updated_at=at,
            qbo_amount=row.amount,
            corrections="",
        )
    if isinstance(event, FinancialEvent.PushFailed):
        return replace(
            row,
            status=_FAILED_STATUS[event.category],
            reason_code=None,
            reason=event.message,
            missing=(),
            updated_at=at,
        )
    if isinstance(event, FinancialEvent.ActionRequired):
        return replace(
            row,
            status=Status.ACTION_REQUIRED.value,
            reason_code=event.reason_code,
            reason=event.message,
            missing=tuple(event.missing),
            updated_at=at,
        )
    if isinstance(event, FinancialEvent.RetryRequested):
        return replace(
            row,
            status=Status.PENDING.value,
            reason_code=None,
            reason="",
            missing=(),
            updated_at=at,
        )
    if isinstance(event, FinancialEvent.Dismissed):
        return replace(row, status=Status.DISMISSED.value, reason=event.note, updated_at=at)
    if isinstance(event, FinancialEvent.FlightAmended):
        if row.status == Status.DISMISSED.value:
            return replace(row, amount=event.amount, student_id=event.student_id, updated_at=at)
        return replace(
            row,
            status=Status.PENDING.value,
            amount=event.amount,
            student_id=event.student_id,
            reason_code=None,
            reason="",
            missing=(),
            updated_at=at,
            corrections=_AMENDMENT if row.qbo_id is not None else row.corrections,
        )
    if isinstance(event, FinancialEvent.FlightCancelled):
        never_sent = row.qbo_id is None
        return replace(
            row,
            status=Status.CANCELLED.value if never_sent else Status.PENDING.value,
            reason=event.reason if never_sent else "",
            reason_code=None,
            missing=(),
            updated_at=at,
            corrections=row.corrections if never_sent else _CANCELLATION,
        )
    if isinstance(event, FinancialEvent.CorrectionStarted):
        return replace(row, status=Status.SYNCING.value, attempts=event.attempt, updated_at=at)
    if isinstance(event, FinancialEvent.CorrectionApplied):
        return replace(
            row,
            status=Status.SYNCED.value,
            reason_code=None,
            reason=event.note,
            missing=(),
            updated_at=at,
            qbo_amount=event.qbo_amount,
            corrections="",
        )
    return row


def ids_to_load(changes: Iterable[Change]) -> builtins.set[UUID]:
    """Ids whose current rows a batch needs (events of financial events created earlier)."""
    created: builtins.set[UUID] = set()
    needed: builtins.set[UUID] = set()
    for _, event in changes:
        if is_creation(event):
            created.add(event.originator_id)
        elif event.originator_id not in created:
            needed.add(event.originator_id)
    return needed


def fold(existing: Mapping[UUID, EventRow], changes: Iterable[Change]) -> dict[UUID, EventRow]:
    """Apply a batch of events to the rows they touch; returns the changed rows only."""
    changed: dict[UUID, EventRow] = {}
    for position, event in changes:
        key: UUID = event.originator_id
        current = changed.get(key) or existing.get(key)
        new = apply_event(current, event, position)
        if new is not None and new is not current:
            changed[key] = new
    return changed


# --- the fast path: compact events and raw rows -----------------------------------------------
#
# A compact event is a plain tuple holding only what the row needs, with every value already in
# its storage form: (op, originator id, timestamp ISO string, *fields). A raw row is a list in
# column order (RAW_COLUMNS) with the amount as its canonical decimal string, timestamps as ISO
# strings and `missing` as a tuple. `compact_event` (from a decoded domain event) and
# `ChangeDecoder` (straight from the stored JSON) produce the same tuples; `fold_raw` applies
# them exactly as `apply_event` applies domain events (tests/unit/test_projection_fastpath.py).

# Every compact event opens with (op, id, at); CREATED's fields are CREATED_FIELDS, built by
# `created_event` alone and read through the CE_* indexes.
EV_OP: Final = 0
EV_ID: Final = 1
EV_AT: Final = 2
CREATED: Final = 0  # CREATED_FIELDS
PUSH_STARTED: Final = 1  # (op, id, at, attempt, doc_number)
SYNCED: Final = 2  # (op, id, at, qbo_id, doc_number)
PUSH_FAILED: Final = 3  # (op, id, at, status, message)
ACTION_REQUIRED: Final = 4  # (op, id, at, reason_code, message, missing)
RETRY_REQUESTED: Final = 5  # (op, id, at)
DISMISSED: Final = 6  # (op, id, at, note)
AMENDED: Final = 7  # (op, id, at, amount, student_id, uses, student_name)
CANCELLED: Final = 8  # (op, id, at, reason)
CORRECTION_STARTED: Final = 9  # (op, id, at, attempt)
CORRECTION_APPLIED: Final = 10  # (op, id, at, note, qbo_amount)

RAW_COLUMNS: tuple[str, ...] = ROW_COLUMNS  # a raw row's layout: EventRow's fields, in order
_COLUMN = {name: i for i, name in enumerate(RAW_COLUMNS)}
COL_ID: Final = _COLUMN["id"]
COL_SCHOOL: Final = _COLUMN["school"]
COL_KIND: Final = _COLUMN["kind"]
COL_REFERENCE: Final = _COLUMN["reference"]
COL_STUDENT_ID: Final = _COLUMN["student_id"]
COL_AMOUNT: Final = _COLUMN["amount"]
COL_STATUS: Final = _COLUMN["status"]
COL_REASON_CODE: Final = _COLUMN["reason_code"]
COL_REASON: Final = _COLUMN["reason"]
COL_MISSING: Final = _COLUMN["missing"]
COL_ATTEMPTS: Final = _COLUMN["attempts"]
COL_QBO_ID: Final = _COLUMN["qbo_id"]
COL_DOC_NUMBER: Final = _COLUMN["doc_number"]
COL_UPDATED_AT: Final = _COLUMN["updated_at"]
COL_APPLIES_TO: Final = _COLUMN["applies_to"]
COL_CREATED_AT: Final = _COLUMN["created_at"]
COL_POSITION: Final = _COLUMN["position"]
COL_QBO_AMOUNT: Final = _COLUMN["qbo_amount"]
COL_CORRECTIONS: Final = _COLUMN["corrections"]
RawRow = list[Any]

CREATED_FIELDS: tuple[str, ...] = (
    "op",
    "id",
    "at",
    "school",
    "kind",
    "reference",
    "student_id",
    "amount",
    "applies_to",
    "uses",
    "student_name",
)
_CREATED_FIELD = {name: i for i, name in enumerate(CREATED_FIELDS)}
CE_SCHOOL: Final = _CREATED_FIELD["school"]
CE_KIND: Final = _CREATED_FIELD["kind"]
CE_REFERENCE: Final = _CREATED_FIELD["reference"]
CE_STUDENT_ID: Final = _CREATED_FIELD["student_id"]
CE_AMOUNT: Final = _CREATED_FIELD["amount"]
CE_APPLIES_TO: Final = _CREATED_FIELD["applies_to"]
CE_USES: Final = _CREATED_FIELD["uses"]
CE_STUDENT_NAME: Final = _CREATED_FIELD["student_name"]

_PENDING = Status.PENDING.value
_SYNCING = Status.SYNCING.value
_SYNCED = Status.SYNCED.value
_ACTION_REQUIRED = Status.ACTION_REQUIRED.value
_DISMISSED = Status.DISMISSED.value
_CANCELLED = Status.CANCELLED.value
_AMENDMENT = "amendment"
_CANCELLATION = "cancellation"

# A new row: every column a creation event does not set starts at its value here.
_NEW_ROW: Final = tuple(
    {
        "status": _PENDING,
        "reason_code": None,
        "reason": "",
        "missing": (),
        "attempts": 0,
        "qbo_id": None,
        "doc_number": None,
        "qbo_amount": None,
        "corrections": "",
    }.get(name)
    for name in RAW_COLUMNS
)


def created_event(
    key: UUID,
    at: str,
    school: str,
    kind: str,
    reference: str,
    student_id: str,
    amount: str,
    applies_to: str | None,
    uses: tuple[str, ...],
    student_name: str,
) -> tuple[Any, ...]:
    """The compact CREATED event (CREATED_FIELDS), values in storage form."""
    return (
        CREATED,
        key,
        at,
        school,
        kind,
        reference,
        student_id,
        amount,
        applies_to,
        uses,
        student_name,
    )


def new_raw_row(event: Sequence[Any], position: int) -> RawRow:
    """The raw row a compact CREATED event starts (the one place a row is created)."""
    row = list(_NEW_ROW)
    at = event[EV_AT]
    row[COL_ID] = event[EV_ID]
    row[COL_SCHOOL] = event[CE_SCHOOL]
    row[COL_KIND] = event[CE_KIND]
    row[COL_REFERENCE] = event[CE_REFERENCE]
    row[COL_STUDENT_ID] = event[CE_STUDENT_ID]
    row[COL_AMOUNT] = event[CE_AMOUNT]
    row[COL_UPDATED_AT] = at
    row[COL_APPLIES_TO] = event[CE_APPLIES_TO]
    row[COL_CREATED_AT] = at
    row[COL_POSITION] = position
    return row


def compact_event(event: Any) -> tuple[Any, ...] | None:
    """The compact form of a decoded domain event (None: not one the view applies).

    Raises AttributeError/KeyError/TypeError when the event lacks what the row needs.
    """
    at = event.timestamp.isoformat()
    key = event.originator_id
    if isinstance(event, FinancialEvent.Recorded):
        data = event.data if isinstance(event.data, dict) else {}
        applies_to = data.get("applies_to")
        return created_event(
            key,
            at,
            event.school,
            event.kind,
            event.reference,
            event.student_id,
            str(event.amount),
            None if applies_to is None else str(applies_to),
            uses_of(event.student_id, data),
            _name_of(event),
        )
    if isinstance(event, FinancialEvent.PushStarted):
        return (PUSH_STARTED, key, at, event.attempt, event.doc_number)
    if isinstance(event, FinancialEvent.Synced):
        return (SYNCED, key, at, event.qbo_id, event.doc_number)
    if isinstance(event, FinancialEvent.PushFailed):
        return (PUSH_FAILED, key, at, _FAILED_STATUS[event.category], event.message)
    if isinstance(event, FinancialEvent.ActionRequired):
        return (ACTION_REQUIRED, key, at, event.reason_code, event.message, tuple(event.missing))
    if isinstance(event, FinancialEvent.RetryRequested):
        return (RETRY_REQUESTED, key, at)
    if isinstance(event, FinancialEvent.Dismissed):
        return (DISMISSED, key, at, event.note)
    if isinstance(event, FinancialEvent.FlightAmended):
        data = event.data if isinstance(event.data, dict) else {}
        uses = uses_of(event.student_id, data)
        return (AMENDED, key, at, str(event.amount), event.student_id, uses, _name_of(event))
    if isinstance(event, FinancialEvent.FlightCancelled):
        return (CANCELLED, key, at, event.reason)
    if isinstance(event, FinancialEvent.CorrectionStarted):
        return (CORRECTION_STARTED, key, at, event.attempt)
    if isinstance(event, FinancialEvent.CorrectionApplied):
        return (CORRECTION_APPLIED, key, at, event.note, str(event.qbo_amount))
    return None


def _name_of(event: Any) -> str:
    """The student's display name an event carries ("" when it has none)."""
    name = getattr(event, "student_name", "")
    return name if isinstance(name, str) else ""


def raw_ids_to_load(changes: Iterable[Change]) -> builtins.set[UUID]:
    """Ids whose current rows a batch of compact (or domain) events needs."""
    created: builtins.set[UUID] = set()
    needed: builtins.set[UUID] = set()
    for _, event in changes:
        if type(event) is tuple:
            creation, key = event[EV_OP] == CREATED, event[EV_ID]
        else:
            creation, key = is_creation(event), event.originator_id
        if creation:
            created.add(key)
        elif key not in created:
            needed.add(key)
    return needed


def fold_raw(existing: Mapping[UUID, RawRow], changes: Iterable[Change]) -> dict[UUID, RawRow]:
    """`fold` over raw rows; changes hold compact events (domain events are compacted first).

    Returns the changed rows only; rows in `existing` are copied, never modified.
    """
    changed: dict[UUID, RawRow] = {}
    for position, given in changes:
        event = given if type(given) is tuple else compact_event(given)
        if event is None:
            continue
        op = event[EV_OP]
        key = event[EV_ID]
        if op == CREATED:
            changed[key] = new_raw_row(event, position)
            continue
        row = changed.get(key)
        if row is None:
            base = existing.get(key)
            if base is None:
                continue
            row = changed[key] = list(base)
        if op == PUSH_STARTED:
            row[COL_STATUS] = _SYNCING
            row[COL_ATTEMPTS] = event[3]
            row[COL_DOC_NUMBER] = event[4]
        elif op == SYNCED:
            row[COL_STATUS] = _SYNCED
            row[COL_QBO_ID] = event[3]
            row[COL_DOC_NUMBER] = event[4]
            row[COL_REASON_CODE] = None
            row[COL_REASON] = ""
            row[COL_MISSING] = ()
            row[COL_QBO_AMOUNT] = row[COL_AMOUNT]
            row[COL_CORRECTIONS] = ""
        elif op == PUSH_FAILED:
            row[COL_STATUS] = event[3]
            row[COL_REASON_CODE] = None
            row[COL_REASON] = event[4]
            row[COL_MISSING] = ()
        elif op == ACTION_REQUIRED:
            row[COL_STATUS] = _ACTION_REQUIRED
            row[COL_REASON_CODE] = event[3]
            row[COL_REASON] = event[4]
            row[COL_MISSING] = event[5]
        elif op == RETRY_REQUESTED:
            row[COL_STATUS] = _PENDING
            row[COL_REASON_CODE] = None
            row[COL_REASON] = ""
            row[COL_MISSING] = ()
        elif op == DISMISSED:
            row[COL_STATUS] = _DISMISSED
            row[COL_REASON] = event[3]
        elif op == AMENDED:
            row[COL_AMOUNT] = event[3]
            row[COL_STUDENT_ID] = event[4]
            if row[COL_STATUS] != _DISMISSED:
                row[COL_STATUS] = _PENDING
                row[COL_REASON_CODE] = None
                row[COL_REASON] = ""
                row[COL_MISSING] = ()
                if row[COL_QBO_ID] is not None:
                    row[COL_CORRECTIONS] = _AMENDMENT
        elif op == CANCELLED:
            never_sent = row[COL_QBO_ID] is None
            row[COL_STATUS] = _CANCELLED if never_sent else _PENDING
            row[COL_REASON_CODE] = None
            row[COL_REASON] = event[3] if never_sent else ""
            row[COL_MISSING] = ()
            if not never_sent:
                row[COL_CORRECTIONS] = _CANCELLATION
        elif op == CORRECTION_STARTED:
            row[COL_STATUS] = _SYNCING
            row[COL_ATTEMPTS] = event[3]
        elif op == CORRECTION_APPLIED:
            row[COL_STATUS] = _SYNCED
            row[COL_REASON_CODE] = None
            row[COL_REASON] = event[3]
            row[COL_MISSING] = ()
            row[COL_QBO_AMOUNT] = event[4]
            row[COL_CORRECTIONS] = ""
        row[COL_UPDATED_AT] = event[EV_AT]
    return changed


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _same(value: Any) -> Any:
    return value


# How each column's value differs between an EventRow and a raw row (others are the same).
_TO_RAW: Final[dict[str, Callable[[Any], Any]]] = {
    "amount": str,
    "missing": tuple,
    "updated_at": datetime.isoformat,
    "created_at": _optional(datetime.isoformat),
    "qbo_amount": _optional(str),
}
_FROM_RAW: Final[dict[str, Callable[[Any], Any]]] = {
    "amount": Decimal,
    "missing": tuple,
    "updated_at": datetime.fromisoformat,
    "created_at": _optional(datetime.fromisoformat),
    "qbo_amount": _optional(Decimal),
    "corrections": lambda value: value or "",
}
_TO_RAW_BY_COLUMN = tuple(_TO_RAW.get(name, _same) for name in RAW_COLUMNS)
_FROM_RAW_BY_COLUMN = tuple(_FROM_RAW.get(name, _same) for name in RAW_COLUMNS)


def raw_from_row(row: EventRow) -> RawRow:
    """An EventRow in raw form."""
    return [
        convert(getattr(row, name))
        for name, convert in zip(RAW_COLUMNS, _TO_RAW_BY_COLUMN, strict=True)
    ]


def row_from_raw(raw: Sequence[Any]) -> EventRow:
    """A raw row as an EventRow."""
    return EventRow(*[convert(v) for convert, v in zip(_FROM_RAW_BY_COLUMN, raw, strict=True)])


_CREATION_TOPICS = (
    FinancialEvent.FlightEnded,
    FinancialEvent.InvoiceRequested,
    FinancialEvent.PaymentReceived,
    FinancialEvent.PaymentRefunded,
)
_FAST_OPS: dict[type[Any], int] = {
    **dict.fromkeys(_CREATION_TOPICS, CREATED),
    FinancialEvent.PushStarted: PUSH_STARTED,
    FinancialEvent.Synced: SYNCED,
    FinancialEvent.PushFailed: PUSH_FAILED,
    FinancialEvent.ActionRequired: ACTION_REQUIRED,
    FinancialEvent.RetryRequested: RETRY_REQUESTED,
    FinancialEvent.Dismissed: DISMISSED,
}


class _Slow(Exception):
    """The fast decoder met something it does not handle: decode through the mapper."""


_SLOW = _Slow()
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_TIME_CACHE = 4096
_TYPE_NAME = re.compile(rb'"_type_":"([^"\\]*)"')


def _text(value: Any) -> str:
    if type(value) is not str:
        raise _SLOW
    return value


def _scalar(value: Any) -> Any:
    """A JSON value that the library's object hook leaves as it is (no dict, no list)."""
    if type(value) is dict or type(value) is list:
        raise _SLOW
    return value


def _transcoded(value: Any, name: str) -> str:
    if type(value) is not dict or len(value) != 2 or value.get("_type_") != name:
        raise _SLOW
    return _text(value.get("_data_"))


class ChangeDecoder:
    """Stored notifications -> compact events, reading the stored JSON directly.

    Only the fields the row needs are read, each checked to be in the exact form the library's
    JSONTranscoder would decode into the same value; anything else (other transcodings, lists or
    dicts where scalars are expected, upcasting, unknown topics) goes through the mapper and
    `compact_event`, so the result is the same either way. A notification that cannot be decoded
    raises UnreadableEvent naming its position.
    """

    def __init__(self, mapper: Mapper[UUID]) -> None:
        self.mapper = mapper
        transcoder = mapper.transcoder
        names = getattr(transcoder, "names", {}) if isinstance(transcoder, JSONTranscoder) else {}
        standard = type(names.get("decimal_str")) is DecimalAsStr and (
            type(names.get("datetime_iso")) is DatetimeAsISO
        )
        self._ops: dict[str, int] = {}
        if standard:
            for cls, op in _FAST_OPS.items():
                topic = get_topic(cls)
                if getattr(cls, "class_version", 1) == 1 and resolve_topic(topic) is cls:
                    self._ops[topic] = op
        self._names = {n.encode() for n in names}
        self._times: dict[str, str] = {}  # stored timestamp -> its ISO form (normalised)
        self._cipher = mapper.cipher
        self._compressor = mapper.compressor
        self.fast = 0  # notifications decoded directly (for tests and profiling)
        self.slow = 0  # notifications decoded through the mapper

    def decode(self, notifications: Iterable[Notification]) -> builtins.list[Change]:
        """(position, compact event) for the financial events among the notifications."""
        changes: builtins.list[Change] = []
        append = changes.append
        ops = self._ops
        fast = self._fast
        for notification in notifications:
            topic = notification.topic
            if not topic.startswith(FINANCIAL_EVENT_TOPIC_PREFIX):
                continue
            op = ops.get(topic)
            event: tuple[Any, ...] | None = None
            if op is not None:
                try:
                    event = fast(op, notification)
                    self.fast += 1
                except Exception:  # anything unusual: the mapper decides, and says why
                    event = None
            if event is None:
                self.slow += 1
                event = self.slow_decode(notification)
                if event is None:
                    continue
            append((notification.id, event))
        return changes

    def slow_decode(self, notification: Notification) -> tuple[Any, ...] | None:
        """Decode through the mapper (raises UnreadableEvent when that fails)."""
        try:
            return compact_event(self.mapper.to_domain_event(notification))
        except Exception as exc:
            raise UnreadableEvent(notification.id, _reason(exc)) from exc

    def _fast(self, op: int, notification: Notification) -> tuple[Any, ...]:
        state = notification.state
        if self._cipher is not None:
            state = self._cipher.decrypt(state)
        if self._compressor is not None:
            state = self._compressor.decompress(state)
        if b"\\u" in state:  # an escaped key could hide a transcoded value from the check
            raise _SLOW
        types = state.count(b'"_type_"')
        if types:
            names = _TYPE_NAME.findall(state)
            if len(names) != types or not self._names.issuperset(names):
                raise _SLOW  # the mapper would refuse an unknown transcoding: let it say so
        text = state.decode("utf8")
        d, end = _SCAN(text, 0)  # the C scanner json.loads runs, without its wrappers
        if end != len(text) or type(d) is not dict or "class_version" in d:
            raise _SLOW
        stamp = _transcoded(d["timestamp"], "datetime_iso")
        at = self._times.get(stamp)
        if at is None:
            if len(self._times) > _TIME_CACHE:
                self._times.clear()
            at = self._times[stamp] = datetime.fromisoformat(stamp).isoformat()
        key = notification.originator_id
        if type(key) is not UUID:
            raise _SLOW
        if op == CREATED:
            data = d["data"]
            if type(data) is not dict or "_type_" in data:
                raise _SLOW
            applies_to = _scalar(data.get("applies_to"))
            return created_event(
                key,
                at,
                _text(d["school"]),
                _text(d["kind"]),
                _text(d["reference"]),
                _text(d["student_id"]),
                str(Decimal(_transcoded(d["amount"], "decimal_str"))),
                None if applies_to is None else str(applies_to),
                uses_of(d["student_id"], data),
                _text(d.get("student_name", "")),
            )
        if op == PUSH_STARTED:
            attempt = d["attempt"]
            if type(attempt) is not int:
                raise _SLOW
            return (PUSH_STARTED, key, at, attempt, _scalar(d["doc_number"]))
        if op == SYNCED:
            return (SYNCED, key, at, _scalar(d["qbo_id"]), _scalar(d["doc_number"]))
        if op == PUSH_FAILED:
            status = _FAILED_STATUS[_text(d["category"])]
            return (PUSH_FAILED, key, at, status, _scalar(d["message"]))
        if op == ACTION_REQUIRED:
            missing = d["missing"]
            if type(missing) is not list:
                raise _SLOW
            return (
                ACTION_REQUIRED,
                key,
                at,
                _scalar(d["reason_code"]),
                _scalar(d["message"]),
                tuple(_scalar(m) for m in missing),
            )
        if op == RETRY_REQUESTED:
            return (RETRY_REQUESTED, key, at)
        return (DISMISSED, key, at, _scalar(d["note"]))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AttributeError):
        name = getattr(exc, "name", None)
        return f"the event has no field {name!r}" if name else str(exc)
    if isinstance(exc, KeyError):
        return f"unexpected value {exc.args[0]!r}" if exc.args else "unexpected value"
    return f"{type(exc).__name__}: {exc}"


def decode_events(mapper: Mapper[UUID], notifications: Iterable[Notification]) -> list[Change]:
    """(position, domain event) for the financial events, through the mapper.

    Raises UnreadableEvent naming the position of a notification that cannot be decoded.
    """
    changes: list[Change] = []
    for notification in notifications:
        if not is_financial_topic(notification.topic):
            continue
        try:
            event = mapper.to_domain_event(notification)
        except Exception as exc:
            raise UnreadableEvent(notification.id, _reason(exc)) from exc
        changes.append((notification.id, event))
    return changes


# --- mapping keys in use: the counters behind `mappings check` and the checklist ---------------
#
# Every financial event uses mapping keys ("student:S-7", "charge:aircraft_rental",
# "payment_type:card"). The view keeps, per school and key, how many events use it (`total`),
# how many of them are unsent (`unsent`: not synced, dismissed or cancelled) and a few unsent
# references as examples, updated in the same transaction as the rows: `usage_deltas` says how
# one batch changes them, from the rows before and after it and the keys of each event.

UNSENT_STATUSES: Final = frozenset(
    {
        Status.PENDING.value,
        Status.SYNCING.value,
        Status.RETRYING.value,
        Status.FAILED.value,
        Status.UNCERTAIN.value,
        Status.ACTION_REQUIRED.value,
    }
)
USAGE_EXAMPLES: Final = 5


def uses_of(student_id: Any, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The mapping keys an event with this student and record data needs, in order."""
    return keys_used(student_id, data)


def new_uses(changes: Iterable[Change]) -> dict[UUID, tuple[str, ...]]:
    """Keys set by this batch (creations and amendments; the last one of an id wins)."""
    found: dict[UUID, tuple[str, ...]] = {}
    for _, given in changes:
        event = given if type(given) is tuple else compact_event(given)
        if event is None:
            continue
        if event[EV_OP] == CREATED:
            found[event[EV_ID]] = event[CE_USES]
        elif event[EV_OP] == AMENDED:
            found[event[EV_ID]] = event[5]
    return found


@dataclass
class UsageDelta:
    """How one batch changes the counters of one (school, key)."""

    unsent: int = 0
    total: int = 0
    entered: builtins.list[str] = field(default_factory=list)  # references now unsent
    left: builtins.set[str] = field(default_factory=set)  # references no longer unsent


def usage_deltas(
    before: Mapping[UUID, RawRow],
    after: Mapping[UUID, RawRow],
    stored_uses: Mapping[UUID, tuple[str, ...]],
    batch_uses: Mapping[UUID, tuple[str, ...]],
) -> dict[tuple[str, str], UsageDelta]:
    """Counter changes of a batch: rows before (absent = new) and after it, keys per event.

    `stored_uses` holds the keys recorded for events before this batch (needed for every id in
    `ids_needing_uses`), `batch_uses` the keys this batch sets.
    """
    deltas: dict[tuple[str, str], UsageDelta] = {}
    for key, row in after.items():
        old = before.get(key)
        old_keys = stored_uses.get(key, ()) if old is not None else ()
        new_keys = batch_uses.get(key, old_keys)
        was_unsent = old is not None and old[COL_STATUS] in UNSENT_STATUSES
        is_unsent = row[COL_STATUS] in UNSENT_STATUSES
        if old is not None and old_keys == new_keys and was_unsent == is_unsent:
            continue
        school, reference = row[COL_SCHOOL], row[COL_REFERENCE]
        for k in old_keys:
            d = deltas.setdefault((school, k), UsageDelta())
            d.total -= 1
            if was_unsent:
                d.unsent -= 1
                d.left.add(reference)
        for k in new_keys:
            d = deltas.setdefault((school, k), UsageDelta())
            d.total += 1
            if is_unsent:
                d.unsent += 1
                d.left.discard(reference)
                d.entered.append(reference)
    return {k: d for k, d in deltas.items() if d.unsent or d.total or d.entered or d.left}


def ids_needing_uses(
    before: Mapping[UUID, RawRow],
    after: Mapping[UUID, RawRow],
    batch_uses: Mapping[UUID, tuple[str, ...]],
) -> builtins.set[UUID]:
    """Events whose stored keys `usage_deltas` needs: existing rows that changed sides or keys."""
    return {
        key
        for key, row in after.items()
        if (old := before.get(key)) is not None
        and (
            key in batch_uses
            or (old[COL_STATUS] in UNSENT_STATUSES) != (row[COL_STATUS] in UNSENT_STATUSES)
        )
    }


def merge_examples(current: Sequence[str], delta: UsageDelta) -> builtins.list[str]:
    """The examples after a delta: those that left removed, new ones added up to the limit."""
    kept = [r for r in current if r not in delta.left]
    for reference in delta.entered:
        if len(kept) >= USAGE_EXAMPLES:
            break
        if reference not in kept:
            kept.append(reference)
    return kept


UsageRow = tuple[int, int, builtins.list[str]]  # unsent, total, examples


def usage_writes(
    existing: Mapping[UUID, RawRow],
    changed: Mapping[UUID, RawRow],
    changes: Iterable[Change],
    load_uses: Callable[[builtins.set[UUID]], Mapping[UUID, tuple[str, ...]]],
    load_usage: Callable[[builtins.list[tuple[str, str]]], Mapping[tuple[str, str], UsageRow]],
) -> tuple[
    builtins.list[tuple[UUID, tuple[str, ...]]],
    builtins.list[tuple[str, str, int, int, builtins.list[str]]],
]:
    """What a batch writes besides rows: the keys of events it set, the counters it changed.

    The view adapters pass readers of their stored keys and counters (inside the batch's
    transaction) and write the two lists back: (event id, keys) and (school, key, unsent,
    total, examples).
    """
    batch = new_uses(changes)
    stored = load_uses(ids_needing_uses(existing, changed, batch)) if changed else {}
    deltas = usage_deltas(existing, changed, stored, batch)
    if not deltas:
        return builtins.list(batch.items()), []
    current = load_usage(sorted(deltas))
    counters: builtins.list[tuple[str, str, int, int, builtins.list[str]]] = []
    for (school, key), delta in sorted(deltas.items()):
        unsent, total, examples = current.get((school, key), (0, 0, []))
        counters.append(
            (
                school,
                key,
                unsent + delta.unsent,
                total + delta.total,
                merge_examples(examples, delta),
            )
        )
    return builtins.list(batch.items()), counters


# --- the from-empty load: rows folded in memory across batches, written once -----------------

LOAD_ROWS_IN_MEMORY = 100_000  # rows a load holds before it writes them (memory bound)


class LoadFold:
    """The fold of a from-empty load (ProjectedView.load): rows and their mapping keys stay in
    memory across batches and are written when LOAD_ROWS_IN_MEMORY rows are held, and at the
    end, so most rows are written once and never read back; a row already written and
    changed again is read back (`ids_to_load`) and written again over itself. Student names
    are gathered for the whole load (the last name in log order wins); the counters are left
    to the database.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit or LOAD_ROWS_IN_MEMORY
        self.rows: dict[UUID, RawRow] = {}  # folded, not written yet
        self.uses: dict[UUID, tuple[str, ...]] = {}  # keys set by events since the last write
        self.stored: builtins.set[UUID] = set()  # ids the tables already hold
        self.names: dict[tuple[str, str], str] = {}

    def ids_to_load(self, changes: Iterable[Change]) -> builtins.set[UUID]:
        """Rows this batch needs from the table: created earlier and written already."""
        return {k for k in raw_ids_to_load(changes) if k not in self.rows}

    def apply(self, loaded: Mapping[UUID, RawRow], changes: Sequence[Change]) -> None:
        """Fold one batch over the rows held and those read back (`loaded`)."""
        self.rows.update(loaded)
        self.stored.update(loaded)
        changed = fold_raw(self.rows, changes)
        self.rows.update(changed)
        self.uses.update(new_uses(changes))
        self.names.update(batch_student_names(changed, changes))

    def full(self) -> bool:
        """True when the rows held should be written now."""
        return len(self.rows) >= self.limit

    def take(self) -> tuple[LoadWrites, LoadWrites]:
        """What to write, emptied: (ids new to the tables: insert, ids they hold: overwrite),
        each as (rows, (id, keys))."""
        stored = self.stored
        new: LoadWrites = ([], [])
        again: LoadWrites = ([], [])
        for key, row in self.rows.items():
            (again if key in stored else new)[0].append(row)
        rows = self.rows
        for key, keys in self.uses.items():
            if key in rows:  # keys of an event never created count nowhere: not written
                (again if key in stored else new)[1].append((key, keys))
        self.rows, self.uses, self.stored = {}, {}, set()
        return new, again


LoadWrites = tuple[builtins.list[RawRow], builtins.list[tuple[UUID, tuple[str, ...]]]]


def count_usage(
    rows: Iterable[tuple[str, str, str, tuple[str, ...]]], school: str
) -> builtins.list[KeyUsage]:
    """Usage counters from (school, status, reference, keys) of every row (reference views)."""
    found: dict[str, KeyUsage] = {}
    for row_school, status, reference, keys in rows:
        if row_school != school:
            continue
        for k in keys:
            usage = found.get(k) or KeyUsage(key=k, unsent=0, total=0, examples=())
            unsent = status in UNSENT_STATUSES
            examples = usage.examples
            if unsent and len(examples) < USAGE_EXAMPLES:
                examples = (*examples, reference)
            found[k] = KeyUsage(
                key=k, unsent=usage.unsent + unsent, total=usage.total + 1, examples=examples
            )
    return [found[k] for k in sorted(found)]


# --- row counters: what the dashboard, the banner, the API and metrics count -------------------
#
# Per school the view keeps how many rows are in each (status, kind) and, of the Action Required
# rows, how many have each reason code and, per reason code, each missing key; and the display
# name of each student. They change in the same transaction as the rows, from the rows before
# and after a batch (`count_deltas`) and the names its events carry (`batch_student_names`), so
# no read scans the rows to count them.

StatusKey = tuple[str, str, str]  # (school, status, kind)
ReasonKey = tuple[str, str, str]  # (school, reason code or "", missing key, or GROUP_ROWS)
GROUP_ROWS: Final = ""  # the ReasonKey of a reason group's own row count


@dataclass
class CountDeltas:
    """How a batch changes the row counters (only non-zero changes are written)."""

    statuses: dict[StatusKey, int] = field(default_factory=dict)
    reasons: dict[ReasonKey, int] = field(default_factory=dict)

    def add(
        self,
        school: str,
        status: str,
        kind: str,
        reason_code: str | None,
        missing: Iterable[str],
        sign: int,
    ) -> None:
        """Count one row in (sign 1) or out (sign -1)."""
        key = (school, status, kind)
        self.statuses[key] = self.statuses.get(key, 0) + sign
        if status != _ACTION_REQUIRED:
            return
        code = reason_code or ""
        for part in (GROUP_ROWS, *{m for m in missing if m}):
            reason = (school, code, part)
            self.reasons[reason] = self.reasons.get(reason, 0) + sign

    def add_raw(self, row: Sequence[Any], sign: int) -> None:
        """Count a raw row in or out."""
        self.add(
            row[COL_SCHOOL],
            row[COL_STATUS],
            row[COL_KIND],
            row[COL_REASON_CODE],
            row[COL_MISSING],
            sign,
        )

    def add_row(self, row: EventRow, sign: int) -> None:
        """Count an EventRow in or out."""
        self.add(row.school, row.status, row.kind, row.reason_code, row.missing, sign)

    def status_writes(self) -> builtins.list[tuple[str, str, str, int]]:
        """(school, status, kind, delta), sorted, zero deltas left out."""
        return [(*k, n) for k, n in sorted(self.statuses.items()) if n]

    def reason_writes(self) -> builtins.list[tuple[str, str, str, int]]:
        """(school, reason code, missing key or GROUP_ROWS, delta), sorted, zeros left out."""
        return [(*k, n) for k, n in sorted(self.reasons.items()) if n]


def _counted_alike(old: Sequence[Any], new: Sequence[Any]) -> bool:
    """True when both raw rows sit in the same counters."""
    if old[COL_STATUS] != new[COL_STATUS]:
        return False
    return bool(
        old[COL_STATUS] != _ACTION_REQUIRED
        or (old[COL_REASON_CODE] == new[COL_REASON_CODE] and old[COL_MISSING] == new[COL_MISSING])
    )


def count_deltas(before: Mapping[UUID, RawRow], after: Mapping[UUID, RawRow]) -> CountDeltas:
    """Counter changes of a batch: each changed row (after) out of its old counters (before;
    absent = a new row) and into its new ones."""
    deltas = CountDeltas()
    for key, row in after.items():
        old = before.get(key)
        if old is not None:
            if _counted_alike(old, row):
                continue
            deltas.add_raw(old, -1)
        deltas.add_raw(row, 1)
    return deltas


def batch_student_names(
    after: Mapping[UUID, RawRow], changes: Iterable[Change]
) -> dict[tuple[str, str], str]:
    """(school, student id) -> the display name this batch's events give it (the last one in
    log order wins; an event without a name leaves the stored one)."""
    names: dict[tuple[str, str], str] = {}
    for _, given in changes:
        event = given if type(given) is tuple else compact_event(given)
        if event is None:
            continue
        if event[EV_OP] == CREATED:
            school, student = event[CE_SCHOOL], event[CE_STUDENT_ID]
            name = event[CE_STUDENT_NAME]
        elif event[EV_OP] == AMENDED:
            row = after.get(event[EV_ID])
            if row is None:
                continue
            school, student, name = row[COL_SCHOOL], event[4], event[6]
        else:
            continue
        if name:
            names[(school, student)] = name
    return names


def reason_groups_from(
    reasons: Iterable[tuple[str, str, int]], example: Callable[[str], str]
) -> builtins.list[ReasonGroup]:
    """ReasonGroups from one school's stored reason counters: (reason code, missing key or
    GROUP_ROWS, count), and a reader of a group's example (its oldest row's reference)."""
    counts: dict[str, int] = {}
    missing: dict[str, builtins.set[str]] = {}
    for code, part, n in reasons:
        if n <= 0:
            continue
        if part == GROUP_ROWS:
            counts[code] = n
        else:
            missing.setdefault(code, set()).add(part)
    return [
        ReasonGroup(
            reason_code=code,
            count=counts[code],
            example=example(code),
            missing=tuple(sorted(missing.get(code, ()))),
        )
        for code in sorted(counts)
    ]


def counts_from(by_kind: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """Rows per status from rows per (status, kind)."""
    counts: dict[str, int] = {}
    for (status, _), n in by_kind.items():
        if n > 0:
            counts[status] = counts.get(status, 0) + n
    return counts


# --- queries over rows (shared by the in-memory view and tests) --------------------------------


def select_rows(
    rows: Iterable[EventRow],
    school: str,
    *,
    status: str | None = None,
    statuses: Sequence[str] = (),
    reason_code: str | None = None,
    limit: int | None = None,
) -> list[EventRow]:
    """Rows of one school, oldest first, filtered by status(es) / reason."""
    wanted = {*statuses, *([status] if status else [])}
    result = sorted(
        (
            r
            for r in rows
            if r.school == school
            and (not wanted or r.status in wanted)
            and (reason_code is None or r.reason_code == reason_code)
        ),
        key=lambda r: r.position,
    )
    return result if limit is None else result[:limit]


def page_rows(rows: Iterable[EventRow], school: str, query: EventQuery) -> list[EventRow]:
    """EventQuery applied to rows in memory (what the stored views do in SQL)."""
    found = [
        r
        for r in rows
        if r.school == school
        and (not query.statuses or r.status in query.statuses)
        and (query.reason_code is None or r.reason_code == query.reason_code)
        and (query.student_id is None or r.student_id == query.student_id)
        and (query.search is None or query.search in (r.reference, r.doc_number))
        and (query.since is None or (r.created_at is not None and r.created_at >= query.since))
        and (query.until is None or (r.created_at is not None and r.created_at < query.until))
        and (query.before is None or r.position < query.before)
    ]
    found.sort(key=lambda r: r.position, reverse=True)
    return found[: query.limit]


def count_statuses(rows: Iterable[EventRow], school: str) -> dict[str, int]:
    """Number of rows per status."""
    counts: dict[str, int] = {}
    for row in rows:
        if row.school == school:
            counts[row.status] = counts.get(row.status, 0) + 1
    return counts


def count_kinds(rows: Iterable[EventRow], school: str) -> dict[tuple[str, str], int]:
    """Number of rows per (status, kind)."""
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        if row.school == school:
            key = (row.status, row.kind)
            counts[key] = counts.get(key, 0) + 1
    return counts


def group_reasons(rows: Iterable[EventRow], school: str) -> list[ReasonGroup]:
    """Action Required rows grouped by reason code (example = oldest reference)."""
    groups: dict[str, tuple[int, int, str, builtins.set[str]]] = {}
    for row in rows:
        if row.school != school or row.status != Status.ACTION_REQUIRED.value:
            continue
        code = row.reason_code or ""
        count, first, example, missing = groups.get(code, (0, row.position, row.reference, set()))
        if row.position < first:
            first, example = row.position, row.reference
        groups[code] = (count + 1, first, example, missing | {m for m in row.missing if m})
    return [
        ReasonGroup(reason_code=code, count=count, example=example, missing=tuple(sorted(missing)))
        for code, (count, _, example, missing) in sorted(groups.items())
    ]


class InMemoryFinancialEventView:
    """The view held in a dict: used for --as-of reads and as the reference in tests."""

    def __init__(self) -> None:
        self.rows: dict[UUID, EventRow] = {}
        self.uses: dict[UUID, tuple[str, ...]] = {}
        self.counters = CountDeltas()  # kept as the stored views keep theirs, row by row
        self.students: dict[tuple[str, str], str] = {}
        self.position = 0

    def apply(self, position: int, event: Any) -> None:
        """Apply one event at its log position."""
        old = self.rows.get(event.originator_id)
        new = apply_event(old, event, position)
        if new is not None:
            self.rows[new.id] = new
            self.uses.update(new_uses([(position, event)]))
            if old is not None:
                self.counters.add_row(old, -1)
            self.counters.add_row(new, 1)
            self.students.update(batch_student_names({new.id: raw_from_row(new)}, [(0, event)]))
        self.position = max(self.position, position)

    def counts_by_kind(self, school: str) -> dict[tuple[str, str], int]:
        """Number of rows per (status, kind), from the counters."""
        return {
            (status, kind): n
            for (s, status, kind), n in self.counters.statuses.items()
            if s == school and n > 0
        }

    def student_names(self, school: str, student_ids: Iterable[str]) -> dict[str, str]:
        """Display names of these students (those the log named)."""
        return {
            i: self.students[(school, i)] for i in set(student_ids) if (school, i) in self.students
        }

    def usage(self, school: str) -> builtins.list[KeyUsage]:
        """Mapping keys in use by the school's events, with counts and examples (by key)."""
        rows = sorted(self.rows.values(), key=lambda r: r.position)
        return count_usage(
            ((r.school, r.status, r.reference, self.uses.get(r.id, ())) for r in rows), school
        )

    def advance(self, position: int) -> None:
        """Move the position past an event that does not concern the view."""
        self.position = max(self.position, position)

    def get(self, event_id: UUID) -> EventRow | None:
        """One row by id."""
        return self.rows.get(event_id)

    def list(
        self,
        school: str,
        *,
        status: str | None = None,
        statuses: Sequence[str] = (),
        reason_code: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[EventRow]:
        """Rows of one school, oldest first, filtered by status(es) / reason."""
        return select_rows(
            self.rows.values(),
            school,
            status=status,
            statuses=statuses,
            reason_code=reason_code,
            limit=limit,
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
        """A page of rows, newest first, strictly before log position `before` (keyset)."""
        rows = select_rows(self.rows.values(), school, status=status, reason_code=reason_code)
        newest = [r for r in reversed(rows) if before is None or r.position < before]
        return newest[:limit]

    def page(self, school: str, query: EventQuery) -> builtins.list[EventRow]:
        """One page of rows, newest first."""
        return page_rows(self.rows.values(), school, query)

    def counts(self, school: str) -> dict[str, int]:
        """Number of rows per status, from the counters."""
        return counts_from(self.counts_by_kind(school))

    def reason_groups(self, school: str) -> builtins.list[ReasonGroup]:
        """Action Required rows grouped by reason code, from the counters."""
        return reason_groups_from(
            (
                (code, part, n)
                for (s, code, part), n in self.counters.reasons.items()
                if s == school
            ),
            lambda code: self._example(school, code),
        )

    def _example(self, school: str, code: str) -> str:
        oldest = min(
            (
                r
                for r in self.rows.values()
                if r.school == school
                and r.status == _ACTION_REQUIRED
                and (r.reason_code or "") == code
            ),
            key=lambda r: r.position,
            default=None,
        )
        return "" if oldest is None else oldest.reference

    def reason_counts(self, school: str) -> dict[str, int]:
        """Number of Action Required rows per reason code."""
        return {g.reason_code: g.count for g in self.reason_groups(school)}

    def schools(self) -> builtins.list[str]:
        """Schools that have any row."""
        return sorted({s for (s, _, _), n in self.counters.statuses.items() if n > 0})

    def schools_with_work(self) -> builtins.list[str]:
        """Schools that have a row in one of UNSETTLED_STATUSES (from the counters)."""
        return sorted(
            {
                school
                for (school, status, _), n in self.counters.statuses.items()
                if status in UNSETTLED_STATUSES and n > 0
            }
        )

    def max_tracking_id(self) -> int:
        """The last log position applied."""
        return self.position
