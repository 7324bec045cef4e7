"""What an invoice found under our DocNumber means: the one rule (domain.sync)."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from domain.ports import FoundInvoice, InvoiceDraft, OutcomeKind, PushOutcome, ReasonCode
from domain.sync import found_by_doc_number

DRAFT = InvoiceDraft(
    event_id=uuid.UUID(int=1),
    request_id="r",
    doc_number="F-1",
    customer_id="7",
    txn_date=date(2026, 11, 20),
    lines=(),
    total=Decimal("150.00"),
)
REFUSAL = PushOutcome(
    event_id=DRAFT.event_id,
    kind=OutcomeKind.ACTION_REQUIRED,
    reason_code=ReasonCode.DUPLICATE_DOC_NUMBER,
    code="6140",
    message="Duplicate Document Number Error",
    http_status=400,
)


def test_ours_is_synced_under_its_id() -> None:
    """Same customer and total: the invoice is ours, synced, never sent again."""
    outcome = found_by_doc_number(DRAFT, FoundInvoice("55", "F-1", "7", Decimal("150")), REFUSAL)
    assert (outcome.kind, outcome.qbo_id, outcome.doc_number) == (OutcomeKind.SYNCED, "55", "F-1")


def test_other_contents_are_a_duplicate_naming_both() -> None:
    """Another customer or total: duplicate_doc_number, both contents and QuickBooks' words."""
    found = FoundInvoice("55", "F-1", "8", Decimal("150.00"))
    refused = found_by_doc_number(DRAFT, found, REFUSAL)
    assert (refused.kind, refused.reason_code, refused.code) == (
        OutcomeKind.ACTION_REQUIRED,
        ReasonCode.DUPLICATE_DOC_NUMBER,
        "6140",
    )
    assert "id 55, customer 8" in refused.message and "ours: customer 7" in refused.message
    assert refused.message.endswith("QuickBooks said: Duplicate Document Number Error")
    looked_up = found_by_doc_number(DRAFT, FoundInvoice("55", "F-1", "7", Decimal("151")))
    assert looked_up.reason_code == ReasonCode.DUPLICATE_DOC_NUMBER
    assert looked_up.message.endswith("ours: customer 7, total 150.00)")
