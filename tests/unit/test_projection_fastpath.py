"""The fast projection path (stored JSON -> compact events -> raw rows) equals the mapper path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

import pytest
from eventsourcing.persistence import JSONTranscoder, Mapper, Notification
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.application import FlightLedger
from domain.financial_event import FinancialEvent
from projections.financial_events import (
    ChangeDecoder,
    UnreadableEvent,
    compact_event,
    decode_events,
    fold,
    fold_raw,
    raw_from_row,
    raw_ids_to_load,
    row_from_raw,
)

NS = UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
TEXT = st.text(min_size=0, max_size=12)
CREATIONS_KIND = st.sampled_from(["flight-ended", "invoice-requested", "payment-received"])
AMOUNTS = st.decimals(allow_nan=False, allow_infinity=False, places=3)
CREATIONS = (
    FinancialEvent.FlightEnded,
    FinancialEvent.InvoiceRequested,
    FinancialEvent.PaymentReceived,
)


def _mapper() -> Mapper[UUID]:
    app = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    transcoder = app.mapper.transcoder
    assert isinstance(transcoder, JSONTranscoder)
    return Mapper(transcoder=transcoder)


MAPPER = _mapper()


def _created(cls: type[Any], key: UUID, at: datetime, draw: Any) -> Any:
    data: dict[str, Any] = {
        "hobbs": {"start": Decimal("1.5"), "end": Decimal("2.7")},
        "ended_at": at,
        "day": date(2026, 11, 20),
        "charges": [{"code": "x", "quantity": Decimal("1.2"), "rate": Decimal("165.00")}],
    }
    applies_to = draw(st.one_of(st.none(), TEXT, st.integers(), st.just(key).map(str)))
    if applies_to is not None:
        data["applies_to"] = applies_to
    return cls(
        originator_id=key,
        originator_version=1,
        originator_topic="domain.financial_event:FinancialEvent",
        timestamp=at,
        school=draw(TEXT),
        kind=draw(CREATIONS_KIND),
        reference=draw(TEXT),
        student_id=draw(TEXT),
        student_name=draw(TEXT),
        amount=draw(AMOUNTS),
        currency="USD",
        data=data,
        actor="system",
    )


def _fixed(strategy: Any) -> Any:
    """A stand-in for hypothesis' draw in example tests: plain fixed values."""
    if strategy is TEXT:
        return "F-1"
    if strategy is CREATIONS_KIND:
        return "flight-ended"
    return Decimal("270.00") if strategy is AMOUNTS else None


def _later(key: UUID, version: int, at: datetime, draw: Any) -> Any:
    kind = draw(st.integers(0, 10))
    base: dict[str, Any] = {"originator_id": key, "originator_version": version, "timestamp": at}
    if kind > 5:
        return _correction(kind, base, draw)
    if kind == 0:
        return FinancialEvent.PushStarted(  # type: ignore[call-arg]
            **base,
            attempt=draw(st.integers(1, 9)),
            request_id="r",
            doc_number=draw(TEXT),
            batched=False,
            actor="w",
        )
    if kind == 1:
        return FinancialEvent.Synced(  # type: ignore[call-arg]
            **base, qbo_id=draw(TEXT), doc_number=draw(TEXT), actor="w"
        )
    if kind == 2:
        return FinancialEvent.PushFailed(  # type: ignore[call-arg]
            **base,
            category=draw(st.sampled_from(["transient", "exhausted", "uncertain"])),
            code="500",
            message=draw(TEXT),
            actor="w",
        )
    if kind == 3:
        return FinancialEvent.ActionRequired(  # type: ignore[call-arg]
            **base,
            reason_code=draw(st.sampled_from(["missing_mapping", "auth_expired", "validation"])),
            message=draw(TEXT),
            missing=draw(st.lists(TEXT, max_size=3)),
            actor="w",
        )
    if kind == 4:
        return FinancialEvent.RetryRequested(  # type: ignore[call-arg]
            **base, operator="ops", scope="all"
        )
    return FinancialEvent.Dismissed(**base, operator="ops", note=draw(TEXT))  # type: ignore[call-arg]


def _correction(kind: int, base: dict[str, Any], draw: Any) -> Any:
    """The corrections' events (issue 13), folded by both paths alike."""
    if kind == 6:
        return FinancialEvent.FlightAmended(  # type: ignore[call-arg]
            **base,
            data={"flight_id": "F-1"},
            amount=draw(AMOUNTS),
            student_id=draw(TEXT),
            student_name="S",
            currency="USD",
            reason=draw(TEXT),
            actor="ana",
        )
    if kind == 7:
        return FinancialEvent.FlightCancelled(**base, reason=draw(TEXT), actor="ana")  # type: ignore[call-arg]
    if kind == 8:
        return FinancialEvent.CorrectionStarted(  # type: ignore[call-arg]
            **base,
            key="v2",
            action="update",
            request_id="r",
            doc_number=draw(TEXT),
            amount=draw(AMOUNTS),
            attempt=draw(st.integers(1, 9)),
            actor="w",
        )
    if kind == 9:
        return FinancialEvent.CorrectionApplied(  # type: ignore[call-arg]
            **base,
            key="v2",
            action=draw(st.sampled_from(["update", "void", "credit_memo", "supplement", "none"])),
            qbo_id=draw(TEXT),
            doc_number=draw(TEXT),
            amount=draw(AMOUNTS),
            qbo_amount=draw(AMOUNTS),
            note=draw(TEXT),
            actor="w",
        )
    return FinancialEvent.RefundRecorded(  # type: ignore[call-arg]
        **base, refund_id="R-1", amount=draw(AMOUNTS), actor="ana"
    )


@st.composite
def logs(draw: Any) -> list[Any]:
    """A random log: creations of a few events interleaved with their later events."""
    events: list[Any] = []
    versions: dict[UUID, int] = {}
    count = draw(st.integers(1, 40))
    for n in range(count):
        at = T0 + timedelta(minutes=n, microseconds=draw(st.integers(0, 999_999)))
        if draw(st.booleans()):
            at = at.astimezone(timezone(timedelta(hours=draw(st.integers(-12, 12)))))
        if not versions or draw(st.integers(0, 3)) == 0:
            key = uuid5(NS, f"e-{n}")
            events.append(_created(draw(st.sampled_from(CREATIONS)), key, at, draw))
            versions[key] = 1
        else:
            key = draw(st.sampled_from(sorted(versions)))
            versions[key] += 1
            events.append(_later(key, versions[key], at, draw))
    return events


def _notifications(events: list[Any], first: int = 1) -> list[Notification]:
    result = []
    for offset, event in enumerate(events):
        stored = MAPPER.to_stored_event(event)
        result.append(
            Notification(
                id=first + offset,
                originator_id=stored.originator_id,
                originator_version=stored.originator_version,
                topic=stored.topic,
                state=stored.state,
            )
        )
    return result


def _notification(position: int, topic: str, state: bytes) -> Notification:
    return Notification(
        id=position,
        originator_id=uuid5(NS, "bad"),
        originator_version=1,
        topic=topic,
        state=state,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs(), st.integers(1, 40))
def test_fast_decode_and_fold_equal_the_mapper_path(events: list[Any], split: int) -> None:
    """Over a random log, direct decoding + fold_raw give the rows that mapper + fold give."""
    notifications = _notifications(events)
    decoder = ChangeDecoder(MAPPER)
    fast = decoder.decode(notifications)
    slow = decode_events(MAPPER, notifications)
    compacts = [(p, compact_event(e)) for p, e in slow]
    assert fast == [(p, c) for p, c in compacts if c is not None]  # RefundRecorded: no row change
    assert decoder.fast + decoder.slow == len(notifications)
    # in two batches, the second reading the first's rows back, as a view does
    first = [c for c in fast if c[0] <= split]  # by log position (RefundRecorded is skipped)
    second = [c for c in fast if c[0] > split]
    rows = fold_raw({}, first)
    expected = fold({}, slow[:split])
    assert {k: row_from_raw(v) for k, v in rows.items()} == expected
    loaded = {k: v for k, v in rows.items() if k in raw_ids_to_load(second)}
    changed = fold_raw(loaded, second)
    expected_changed = fold({k: row_from_raw(v) for k, v in loaded.items()}, slow[split:])
    assert {k: row_from_raw(v) for k, v in changed.items()} == expected_changed


def test_library_shaped_events_take_the_fast_path() -> None:
    """Events written by the project's mapper are decoded without the mapper."""
    key = uuid5(NS, "x")
    events = [
        _created(FinancialEvent.FlightEnded, key, T0, _fixed),
        FinancialEvent.Synced(  # type: ignore[call-arg]
            originator_id=key,
            originator_version=2,
            timestamp=T0,
            qbo_id="1",
            doc_number="D",
            actor="w",
        ),
    ]
    events[0].data.pop("applies_to", None)
    decoder = ChangeDecoder(MAPPER)
    decoder.decode(_notifications(events))
    assert (decoder.fast, decoder.slow) == (2, 0)


def test_transcoded_scalar_falls_back_to_the_mapper_with_the_same_result() -> None:
    """A transcoded value where the row expects a plain one (a UUID applies_to) goes slow."""
    key = uuid5(NS, "p")
    event = _created(FinancialEvent.PaymentReceived, key, T0, _fixed)
    event.data["applies_to"] = key
    notifications = _notifications([event])
    decoder = ChangeDecoder(MAPPER)
    changes = decoder.decode(notifications)
    assert decoder.slow == 1
    assert changes[0][1][8] == str(key)


def test_fold_raw_leaves_loaded_rows_untouched() -> None:
    """fold_raw copies an existing row before changing it (the caller's dict is not altered)."""
    key = uuid5(NS, "k")
    created = _created(FinancialEvent.FlightEnded, key, T0, _fixed)
    base = fold_raw({}, [(1, created)])[key]
    snapshot = list(base)
    dismissed = FinancialEvent.Dismissed(  # type: ignore[call-arg]
        originator_id=key, originator_version=2, timestamp=T0, operator="o", note="n"
    )
    changed = fold_raw({key: base}, [(2, dismissed)])
    assert base == snapshot
    assert changed[key][6] == "dismissed"
    assert raw_from_row(row_from_raw(changed[key])) == changed[key]


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        (b"not json", "log position 7 cannot be read"),
        (b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-20T08:00:00+00:00"}}', "note"),
        (
            b'{"timestamp":{"_type_":"no_such","_data_":"x"},"operator":"o","note":"n"}',
            "no_such",
        ),
    ],
)
def test_undecodable_event_names_its_position(state: bytes, fragment: str) -> None:
    """Garbage, a missing field or an unknown transcoding raise UnreadableEvent with a reason."""
    topic = "domain.financial_event:FinancialEvent.Dismissed"
    with pytest.raises(UnreadableEvent) as caught:
        ChangeDecoder(MAPPER).decode([_notification(7, topic, state)])
    assert str(caught.value).startswith("log position 7 cannot be read: ")
    assert fragment in str(caught.value)
    assert caught.value.position == 7


def test_unknown_financial_topic_is_unreadable_and_other_topics_are_skipped() -> None:
    """A FinancialEvent topic that resolves to nothing stops; another aggregate's is skipped."""
    other = _notification(3, "domain.connection:Connection.Connected", b"garbage")
    assert ChangeDecoder(MAPPER).decode([other]) == []
    unknown = _notification(4, "domain.financial_event:FinancialEvent.Vanished", b"{}")
    with pytest.raises(UnreadableEvent, match="log position 4 cannot be read"):
        ChangeDecoder(MAPPER).decode([unknown])
