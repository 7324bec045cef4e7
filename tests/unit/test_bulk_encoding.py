"""Worker processes of the bulk import encode exactly what the importing ledger would store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from eventsourcing.persistence import Mapper
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.application import FlightLedger
from domain.records import (
    Aircraft,
    Charge,
    FlightEndedRecord,
    Hobbs,
    InvoiceRequestedRecord,
    Party,
    PaymentReceivedRecord,
    Record,
)
from workers.bulk_import import pool_encoding, worker_encoder

TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20)
MONEY = st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=2)
WHEN = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.just(datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=timezone(timedelta(hours=-5))))
PARTY = st.builds(Party, id=TEXT, name=TEXT)
STUDENT = st.builds(Party, id=TEXT, name=TEXT, email=st.none() | TEXT)
CHARGES = st.lists(
    st.builds(Charge, code=TEXT, quantity=MONEY, rate=MONEY, description=st.none() | TEXT),
    min_size=1,
    max_size=3,
).map(tuple)
FLIGHTS = st.builds(
    FlightEndedRecord,
    flight_id=TEXT,
    ended_at=WHEN,
    student=STUDENT,
    instructor=PARTY,
    aircraft=st.builds(Aircraft, tail=TEXT, type=TEXT),
    hobbs=st.builds(Hobbs, start=MONEY, end=MONEY),
    charges=CHARGES,
    currency=TEXT,
)
INVOICES = st.builds(
    InvoiceRequestedRecord,
    request_id=TEXT,
    requested_at=WHEN,
    student=STUDENT,
    charges=CHARGES,
    currency=TEXT,
    memo=st.none() | TEXT,
)
PAYMENTS = st.builds(
    PaymentReceivedRecord,
    payment_id=TEXT,
    received_at=WHEN,
    student=STUDENT,
    amount=MONEY,
    payment_type=TEXT,
    currency=TEXT,
    applies_to=st.none() | TEXT,
)


@pytest.fixture(scope="module")
def app() -> Iterator[FlightLedger]:
    """An in-memory ledger (no I/O) whose transcoder the mappers share."""
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield ledger
    ledger.close()


@settings(max_examples=150, deadline=None)
@given(record=st.one_of(FLIGHTS, INVOICES, PAYMENTS), actor=TEXT, at=WHEN)
def test_worker_encoding_equals_the_ledgers_mapper(
    app: FlightLedger, record: Record, actor: str, at: datetime
) -> None:
    """Any record (quotes, backslashes, control, non-ASCII characters): a worker process's
    stored event is the ledger's own, and a stock Mapper reads it back as the same event."""
    assert pool_encoding(app)
    event = app.new_creation_event("school-1", record, actor=actor, at=at)
    expected = app.mapper.to_stored_event(event)
    assert worker_encoder("school-1", actor, at)(record) == expected
    stock: Mapper[UUID] = Mapper(transcoder=app.mapper.transcoder)
    assert stock.to_domain_event(expected) == event


def test_a_mapper_that_encrypts_is_not_left_to_the_workers() -> None:
    """Worker processes have no key: a ledger whose mapper encrypts encodes in its process."""
    from eventsourcing.cipher import AESCipher

    key = AESCipher.create_key(16)
    ledger = FlightLedger(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.popo",
            "CIPHER_TOPIC": "eventsourcing.cipher:AESCipher",
            "CIPHER_KEY": key,
        }
    )
    assert not pool_encoding(ledger)
    ledger.close()
