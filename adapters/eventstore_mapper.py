"""Fast, byte-identical encoding of FinancialEvent creation events.

The library's Mapper turns an event into a dict and runs json's encoder with a Python `default`
hook for every Decimal and datetime. A creation event has a fixed shape (the record's fields), so
here its JSON is written directly with the same C string escaper json uses. The bytes are exactly
the library's (same keys, same order, same transcodings, `separators=(",", ":")`,
`ensure_ascii=False`), so the stock Mapper reads them back; any value of an unexpected type
raises TypeError and the caller falls back to the library's encoder.

Two entry points share one writer: FinancialEventMapper (MAPPER_TOPIC; every save) and
`stored_creation_event` (bulk import: straight from a validated Record, no event object).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from json.encoder import encode_basestring  # the escaper json uses when ensure_ascii=False
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from eventsourcing.utils import get_topic

from domain.financial_event import FinancialEvent
from domain.ids import financial_event_id
from domain.records import Record, RecordKind, record_to_data

FINANCIAL_EVENT_TOPIC = get_topic(FinancialEvent)
CREATION_TOPICS: dict[str, str] = {
    RecordKind.FLIGHT_ENDED.value: get_topic(FinancialEvent.FlightEnded),
    RecordKind.INVOICE_REQUESTED.value: get_topic(FinancialEvent.InvoiceRequested),
    RecordKind.PAYMENT_RECEIVED.value: get_topic(FinancialEvent.PaymentReceived),
}
_STATE_KEYS = (
    "originator_id",
    "originator_version",
    "timestamp",
    "originator_topic",
    "school",
    "kind",
    "reference",
    "student_id",
    "student_name",
    "amount",
    "currency",
    "data",
    "actor",
)
_DATA_KEYS = {
    RecordKind.FLIGHT_ENDED.value: (
        "flight_id",
        "ended_at",
        "student",
        "instructor",
        "aircraft",
        "hobbs",
        "charges",
        "currency",
    ),
    RecordKind.INVOICE_REQUESTED.value: (
        "request_id",
        "requested_at",
        "student",
        "charges",
        "currency",
        "memo",
    ),
    RecordKind.PAYMENT_RECEIVED.value: (
        "payment_id",
        "received_at",
        "student",
        "amount",
        "payment_type",
        "currency",
        "applies_to",
    ),
}
_CHARGE_KEYS = ("code", "quantity", "rate")
_CHARGE_KEYS_DESCRIBED = ("code", "quantity", "rate", "description")
_PARTY_KEYS = ("id", "name")
_PARTY_KEYS_EMAIL = ("id", "name", "email")


def _s(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(type(value))
    result: str = encode_basestring(value)
    return result


def _opt(value: Any) -> str:
    return "null" if value is None else _s(value)


def _d(value: Any) -> str:
    if type(value) is not Decimal:
        raise TypeError(type(value))
    return '{"_type_":"decimal_str","_data_":"' + str(value) + '"}'


def _t(value: Any) -> str:
    if type(value) is not datetime:
        raise TypeError(type(value))
    return '{"_type_":"datetime_iso","_data_":"' + value.isoformat() + '"}'


def _dict(value: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if type(value) is not dict or tuple(value) != keys:
        raise TypeError("unexpected shape")
    return value


def _party(value: Any) -> str:
    if type(value) is dict and tuple(value) == _PARTY_KEYS_EMAIL:  # a student with an email
        tail = ',"email":' + _s(value["email"]) + "}"
    else:
        tail = "}"
        value = _dict(value, _PARTY_KEYS)
    return '{"id":' + _s(value["id"]) + ',"name":' + _s(value["name"]) + tail


def _charges(value: Any) -> str:
    if type(value) is not list:
        raise TypeError(type(value))
    parts = []
    for c in value:
        if type(c) is not dict:
            raise TypeError(type(c))
        keys = tuple(c)
        if keys == _CHARGE_KEYS:
            tail = "}"
        elif keys == _CHARGE_KEYS_DESCRIBED:
            tail = ',"description":' + _s(c["description"]) + "}"
        else:
            raise TypeError("unexpected charge shape")
        parts.append(
            '{"code":'
            + _s(c["code"])
            + ',"quantity":'
            + _d(c["quantity"])
            + ',"rate":'
            + _d(c["rate"])
            + tail
        )
    return "[" + ",".join(parts) + "]"


def _data(kind: str, value: Any) -> str:
    keys = _DATA_KEYS.get(kind)
    if keys is None:
        raise TypeError(kind)
    d = _dict(value, keys)
    if kind == "flight-ended":
        aircraft = _dict(d["aircraft"], ("tail", "type"))
        hobbs = _dict(d["hobbs"], ("start", "end"))
        return (
            '{"flight_id":'
            + _s(d["flight_id"])
            + ',"ended_at":'
            + _t(d["ended_at"])
            + ',"student":'
            + _party(d["student"])
            + ',"instructor":'
            + _party(d["instructor"])
            + ',"aircraft":{"tail":'
            + _s(aircraft["tail"])
            + ',"type":'
            + _s(aircraft["type"])
            + '},"hobbs":{"start":'
            + _d(hobbs["start"])
            + ',"end":'
            + _d(hobbs["end"])
            + '},"charges":'
            + _charges(d["charges"])
            + ',"currency":'
            + _s(d["currency"])
            + "}"
        )
    if kind == "invoice-requested":
        return (
            '{"request_id":'
            + _s(d["request_id"])
            + ',"requested_at":'
            + _t(d["requested_at"])
            + ',"student":'
            + _party(d["student"])
            + ',"charges":'
            + _charges(d["charges"])
            + ',"currency":'
            + _s(d["currency"])
            + ',"memo":'
            + _opt(d["memo"])
            + "}"
        )
    return (
        '{"payment_id":'
        + _s(d["payment_id"])
        + ',"received_at":'
        + _t(d["received_at"])
        + ',"student":'
        + _party(d["student"])
        + ',"amount":'
        + _d(d["amount"])
        + ',"payment_type":'
        + _s(d["payment_type"])
        + ',"currency":'
        + _s(d["currency"])
        + ',"applies_to":'
        + _opt(d["applies_to"])
        + "}"
    )


def encode_creation_state(
    *,
    timestamp: Any,
    originator_topic: Any,
    school: Any,
    kind: Any,
    reference: Any,
    student_id: Any,
    student_name: Any,
    amount: Any,
    currency: Any,
    data: Any,
    actor: Any,
) -> bytes:
    """JSON bytes of a creation event's state, exactly as the library's JSONTranscoder writes.

    Raises TypeError when a value is not of the type this writer handles.
    """
    return (
        '{"timestamp":'
        + _t(timestamp)
        + ',"originator_topic":'
        + _s(originator_topic)
        + ',"school":'
        + _s(school)
        + ',"kind":'
        + _s(kind)
        + ',"reference":'
        + _s(reference)
        + ',"student_id":'
        + _s(student_id)
        + ',"student_name":'
        + _s(student_name)
        + ',"amount":'
        + _d(amount)
        + ',"currency":'
        + _s(currency)
        + ',"data":'
        + _data(kind, data)
        + ',"actor":'
        + _s(actor)
        + "}"
    ).encode("utf8")


def stored_creation_event(
    record: Record, *, school: str, actor: str, timestamp: datetime
) -> StoredEvent:
    """The stored form of the creation event FlightLedger.new_creation_event would build.

    Same originator id, version 1, topic and state bytes as `mapper.to_stored_event(
    ledger.new_creation_event(school, record, actor=actor, at=timestamp))` with the library's
    Mapper (no cipher, no compressor). The school must already be checked (check_school).
    """
    kind = record.kind.value
    return StoredEvent(
        originator_id=financial_event_id(school, kind, record.source_id),
        originator_version=1,
        topic=CREATION_TOPICS[kind],
        state=encode_creation_state(
            timestamp=timestamp,
            originator_topic=FINANCIAL_EVENT_TOPIC,
            school=school,
            kind=kind,
            reference=record.source_id,
            student_id=record.student.id,
            student_name=record.student.name,
            amount=record.total,
            currency=record.currency,
            data=record_to_data(record),
            actor=actor,
        ),
    )


class FinancialEventMapper(Mapper[UUID]):
    """The library's Mapper, with the direct writer for FinancialEvent creation events."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        """Encode creation events directly; every other event as the library does."""
        if (
            isinstance(domain_event, FinancialEvent.Recorded)
            and getattr(type(domain_event), "class_version", 1) == 1
            and self._fast_transcoder()
        ):
            state = vars(domain_event)
            if tuple(state) == _STATE_KEYS:
                try:
                    stored_state = encode_creation_state(
                        timestamp=state["timestamp"],
                        originator_topic=state["originator_topic"],
                        school=state["school"],
                        kind=state["kind"],
                        reference=state["reference"],
                        student_id=state["student_id"],
                        student_name=state["student_name"],
                        amount=state["amount"],
                        currency=state["currency"],
                        data=state["data"],
                        actor=state["actor"],
                    )
                except TypeError:
                    return super().to_stored_event(domain_event)
                if self.compressor:
                    stored_state = self.compressor.compress(stored_state)
                if self.cipher:
                    stored_state = self.cipher.encrypt(stored_state)
                return StoredEvent(
                    originator_id=state["originator_id"],
                    originator_version=state["originator_version"],
                    topic=_topic(type(domain_event)),
                    state=stored_state,
                )
        return super().to_stored_event(domain_event)

    def _fast_transcoder(self) -> bool:
        """True when the transcoder is the library's JSON one with its stock transcodings."""
        if type(self.transcoder) is not JSONTranscoder:
            return False
        names = self.transcoder.names
        return (
            type(names.get("decimal_str")).__name__ == "DecimalAsStr"
            and type(names.get("datetime_iso")).__name__ == "DatetimeAsISO"
        )


_TOPICS: dict[type[Any], str] = {}


def _topic(cls: type[Any]) -> str:
    try:
        return _TOPICS[cls]
    except KeyError:
        _TOPICS[cls] = topic = get_topic(cls)
        return topic
