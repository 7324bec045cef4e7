"""The correction service acts on the gateway's final outcome, never on a QuickBooks code.

A fake correction gateway (pure logic: the gateway's own reading of QuickBooks' answers is
tested against the simulator in tests/integration/test_gateway_corrections.py) answers an
in-place update with the flags the real gateway sets: `object_gone` (the invoice was deleted in
QuickBooks since it was read) and `stale_object` (saved in QuickBooks since our read).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID

import pytest

from domain.application import FlightLedger
from domain.financial_event import Status
from domain.ports import (
    CreditDraft,
    FixedClock,
    InvoiceChange,
    InvoiceRead,
    LookupResult,
    OutcomeKind,
    PushOutcome,
    QboInvoice,
    ReasonCode,
)
from domain.records import RecordKind, parse_correction_line
from services.push_pass import SyncEngine
from tests.factories import amendment
from tests.fakes import (
    T0,
    FakeAccountingGateway,
    FakeFinancialEventView,
    ready_school,
    record_flights,
)

SCHOOL = "default"


@dataclass
class FakeCorrectionGateway(FakeAccountingGateway):
    """The fake QBO plus corrections: updates answer from `updates`, one per call."""

    updates: list[PushOutcome] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    sync_token: int = 0

    def read_invoice(self, event_id: UUID, qbo_id: str) -> InvoiceRead:
        """The invoice as pushed, at the current SyncToken."""
        self.reads.append(qbo_id)
        stored = self.invoices[qbo_id]
        return InvoiceRead(
            found=QboInvoice(
                qbo_id=qbo_id,
                doc_number=stored.doc_number,
                sync_token=str(self.sync_token),
                customer_id=stored.customer_id,
                total=stored.total,
                balance=stored.total,
            )
        )

    def update_invoice(self, change: InvoiceChange) -> PushOutcome:
        """The next scripted answer, else applied."""
        if self.updates:
            return self.updates.pop(0)
        return PushOutcome(change.event_id, OutcomeKind.SYNCED, qbo_id=change.qbo_id)

    def void_invoice(
        self, event_id: UUID, qbo_id: str, sync_token: str, request_id: str
    ) -> PushOutcome:
        """Voided."""
        return PushOutcome(event_id, OutcomeKind.SYNCED, qbo_id=qbo_id)

    def push_credit_memo(self, draft: CreditDraft) -> PushOutcome:
        """Not used here."""
        raise AssertionError("an unpaid invoice is updated, never credited")

    def push_refund_receipt(self, draft: CreditDraft) -> PushOutcome:
        """Not used here."""
        raise AssertionError("no refund here")

    def find_document(self, entity: str, doc_number: str) -> LookupResult:
        """Nothing found."""
        return LookupResult()


@pytest.fixture
def ledger() -> FlightLedger:
    """An in-memory ledger on a fixed clock."""
    return FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))


def amended(ledger: FlightLedger, gateway: FakeCorrectionGateway) -> SyncEngine:
    """F-1 synced, then amended to 1.0 h: the next pass corrects it in place."""
    ready_school(ledger)
    record_flights(ledger, 1)
    engine = SyncEngine(
        ledger, FakeFinancialEventView(ledger), lambda _s: gateway, rng=random.Random(1)
    )
    engine.run_pass(SCHOOL)
    assert ledger.find(SCHOOL, "F-1").status == Status.SYNCED
    line = json.dumps(amendment("F-1", "1.0"))
    assert ledger.record_correction(SCHOOL, parse_correction_line(RecordKind.FLIGHT_AMENDED, line))
    assert ledger.find(SCHOOL, "F-1").correction_due
    return engine


def test_an_update_of_an_invoice_gone_from_quickbooks_needs_a_person(
    ledger: FlightLedger,
) -> None:
    """object_gone: changed_in_quickbooks saying the invoice was deleted; nothing re-sent."""
    gateway = FakeCorrectionGateway()
    engine = amended(ledger, gateway)
    event_id = ledger.find(SCHOOL, "F-1").id
    gateway.updates.append(
        PushOutcome(
            event_id,
            OutcomeKind.ACTION_REQUIRED,
            reason_code=ReasonCode.CHANGED_IN_QUICKBOOKS,
            message="Object Not Found : Another user has deleted this transaction",
            object_gone=True,
        )
    )
    engine.run_pass(SCHOOL)
    event = ledger.find(SCHOOL, "F-1")
    assert (event.status, event.reason_code) == (Status.ACTION_REQUIRED, "changed_in_quickbooks")
    assert "was deleted in QuickBooks" in event.reason
    assert len(gateway.reads) == 1  # read once before the update, never re-read


def test_a_code_alone_is_not_read_by_the_correction_service(ledger: FlightLedger) -> None:
    """An inactive-mapping refusal that carries QuickBooks' Object Not Found code but no
    object_gone flag is recorded as the gateway classified it, not as a deleted invoice."""
    gateway = FakeCorrectionGateway()
    engine = amended(ledger, gateway)
    event_id = ledger.find(SCHOOL, "F-1").id
    gateway.updates.append(
        PushOutcome(
            event_id,
            OutcomeKind.ACTION_REQUIRED,
            reason_code=ReasonCode.INACTIVE_MAPPING,
            code="610",
            message="Object Not Found : Something you're trying to use has been made inactive",
        )
    )
    engine.run_pass(SCHOOL)
    event = ledger.find(SCHOOL, "F-1")
    assert (event.status, event.reason_code) == (Status.ACTION_REQUIRED, "inactive_mapping")
    assert "was deleted in QuickBooks" not in event.reason


def test_a_stale_object_is_reread_and_sent_once_more(ledger: FlightLedger) -> None:
    """stale_object: one re-read, one more update, applied; the note keeps QuickBooks' words."""
    gateway = FakeCorrectionGateway()
    engine = amended(ledger, gateway)
    event_id = ledger.find(SCHOOL, "F-1").id
    gateway.updates.append(
        PushOutcome(
            event_id,
            OutcomeKind.TRANSIENT,
            code="5010",
            message="Stale Object Error : You and another user were working on the same thing",
            stale_object=True,
        )
    )
    engine.run_pass(SCHOOL)
    event = ledger.find(SCHOOL, "F-1")
    assert event.status == Status.SYNCED and not event.correction_due
    assert event.qbo_amount == Decimal("225.00")
    assert len(gateway.reads) == 2  # the read before the update, the re-read after the answer
    assert "QuickBooks first answered: Stale Object Error : You and another user" in event.reason
