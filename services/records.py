"""Record a financial fact or a correction, and say what it became.

`POST /api/v1/flights`, `/invoice-requests`, `/payments`, the correction routes and
`/records` call these; `flightledger record KIND FILE` streams whole files through
workers/bulk_import.py (one transaction per chunk) to the same ledger commands. Validation is
domain.records' (the entry point parses, naming fields as the CLI does); this module appends
and answers which financial event the record is, and whether it was a duplicate, a conflict
(the same id recorded with other contents) or new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import IntegrityError

from domain.application import FlightLedger
from domain.financial_event import FinancialEvent
from domain.ids import financial_event_id
from domain.jsonable import to_jsonable
from domain.records import (
    CORRECTION_PARSERS,
    Correction,
    FlightAmendedRecord,
    PaymentRefundedRecord,
    Record,
    RecordError,
    RecordKind,
    record_to_data,
)

ID_FIELD = {
    RecordKind.FLIGHT_ENDED: "flight_id",
    RecordKind.INVOICE_REQUESTED: "request_id",
    RecordKind.PAYMENT_RECEIVED: "payment_id",
    RecordKind.PAYMENT_REFUNDED: "refund_id",
}


@dataclass(frozen=True)
class Recorded:
    """The financial event a record created (or, for a duplicate, already was)."""

    event: FinancialEvent
    duplicate: bool


class RecordedDifferently(ValueError):
    """The record's id was already recorded with other contents: nothing was appended."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def _holds(event: FinancialEvent, sent: dict[str, Any]) -> bool:
    """Whether the recorded event holds these values (compared as JSON, as they were sent)."""
    return all(to_jsonable(event.data.get(k)) == to_jsonable(v) for k, v in sent.items())


def record(ledger: FlightLedger, school: str, record: Record, *, actor: str) -> Recorded:
    """Append one record; a duplicate of an identical one appends nothing. Raises
    RecordedDifferently when the id was recorded with other contents (send a correction)."""
    event = ledger.new_financial_event(school, record, actor=actor)
    try:  # as ledger.record, keeping the new aggregate: the answer needs no read after the append
        ledger.save(event)
        return Recorded(event, duplicate=False)
    except IntegrityError:  # recorded before: the answer is what the log holds
        event = ledger.financial_event(event.id)
    if to_jsonable(event.data) != to_jsonable(record_to_data(record)):
        raise RecordedDifferently(
            f"{record.kind.value} {record.source_id!r} was already recorded with different "
            "contents; nothing was appended (send a correction instead)",
            field=ID_FIELD[record.kind],
        )
    return Recorded(event, duplicate=True)


def record_correction(
    ledger: FlightLedger, school: str, correction: Correction, *, actor: str
) -> Recorded:
    """Apply one correction to what is recorded; a repeat changes nothing (a duplicate).

    Raises domain.records.UnknownRecord for a flight or payment the school has not recorded,
    RecordError when it cannot apply, RecordedDifferently for a refund id already recorded
    with other contents.
    """
    appended = ledger.record_correction(school, correction, actor=actor)
    if isinstance(correction, PaymentRefundedRecord):
        kind, source = RecordKind.PAYMENT_REFUNDED, correction.refund_id
    elif isinstance(correction, FlightAmendedRecord):
        kind, source = RecordKind.FLIGHT_ENDED, correction.flight.flight_id
    else:
        kind, source = RecordKind.FLIGHT_ENDED, correction.flight_id
    event = ledger.financial_event(financial_event_id(school, kind.value, source))
    if isinstance(correction, PaymentRefundedRecord) and not appended:
        sent = {
            "payment_id": correction.payment_id,
            "amount": correction.amount,
            "currency": correction.currency,
        }
        if not _holds(event, sent):
            raise RecordedDifferently(
                f"refund {correction.refund_id!r} was already recorded with different "
                "contents; nothing was appended",
                field="refund_id",
            )
    return Recorded(event, duplicate=not appended)


@dataclass
class BatchTotals:
    """What a batch did: appended, duplicates, and the items refused (index, field, reason)."""

    recorded: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)


def record_corrections(
    ledger: FlightLedger, school: str, kind: RecordKind, items: Sequence[Any], *, actor: str
) -> BatchTotals:
    """A batch of corrections, each parsed and applied on its own (as `record KIND FILE`)."""
    totals = BatchTotals()
    for index, item in enumerate(items):
        try:
            appended = ledger.record_correction(school, CORRECTION_PARSERS[kind](item), actor=actor)
        except RecordError as exc:
            totals.rejected.append((index, exc.field, exc.reason))
            continue
        if appended:
            totals.recorded += 1
        else:
            totals.duplicates += 1
    return totals
