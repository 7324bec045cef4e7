"""The gateway's corrections against the simulator over HTTP: update, 5010, void, memos, refunds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
import requests

from domain.ports import (
    CreditDraft,
    FixedClock,
    InvoiceChange,
    InvoiceLine,
    OutcomeKind,
    ReasonCode,
)
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.helpers_qbo import draft, make_rig


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A plain simulator."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6)) as simulator:
        yield simulator


def line(amount: str) -> InvoiceLine:
    """One sales line of Item 1."""
    value = Decimal(amount)
    return InvoiceLine("1", "Aircraft rental", Decimal("1"), value, value)


def test_update_stale_token_void_memo_and_refund(
    sqlite_url: str, sim: QboSimulator, clock: FixedClock
) -> None:
    """Sparse update bumps SyncToken; a stale one is 5010; void zeroes; memo/refund are found."""
    gw = make_rig(sqlite_url, sim, clock).gateway()
    created = gw.push_invoice(draft(1))
    assert created.kind == OutcomeKind.SYNCED and created.qbo_id
    event_id = draft(1).event_id
    read = gw.read_invoice(event_id, created.qbo_id)
    assert read.found is not None and read.found.sync_token == "0"
    assert read.found.total == Decimal("198.00") == read.found.balance
    change = InvoiceChange(
        event_id, "upd-1", created.qbo_id, "0", "1", (line("150.00"),), Decimal("150.00")
    )
    assert gw.update_invoice(change).kind == OutcomeKind.SYNCED
    after = gw.read_invoice(event_id, created.qbo_id).found
    assert after is not None and (after.total, after.sync_token) == (Decimal("150.00"), "1")
    stale = gw.update_invoice(
        InvoiceChange(event_id, "upd-2", created.qbo_id, "0", "1", (line("1.00"),), Decimal("1.00"))
    )
    assert stale.code == "5010" and "Stale Object Error" in stale.message
    assert stale.stale_object and not stale.object_gone  # the gateway says what to do: re-read
    assert stale.kind == OutcomeKind.TRANSIENT
    assert gw.void_invoice(event_id, created.qbo_id, "1", "void-1").kind == OutcomeKind.SYNCED
    voided = gw.read_invoice(event_id, created.qbo_id).found
    assert voided is not None and voided.voided and voided.total == 0
    rows = requests.get(f"{sim.url}/_sim/invoices", timeout=5).json()
    assert (rows[0]["voided"], rows[0]["sync_token"], rows[0]["balance"]) == (True, "2", "0.00")

    memo = CreditDraft(
        event_id, "cm-1", "FL-1-C1", "1", date(2026, 11, 21), (line("20.00"),), Decimal("20.00")
    )
    assert gw.push_credit_memo(memo).kind == OutcomeKind.SYNCED
    assert gw.push_credit_memo(memo).kind == OutcomeKind.SYNCED  # same requestid: replayed
    found = gw.find_document("CreditMemo", "FL-1-C1").found
    assert found is not None and found.total == Decimal("20.00")
    assert gw.find_document("CreditMemo", "FL-1-C2").found is None
    refund = CreditDraft(
        event_id, "rf-1", "RF-1", "1", date(2026, 11, 21), (line("30.00"),), Decimal("30.00"),
        deposit_account_id="35",
    )  # fmt: skip
    assert gw.push_refund_receipt(refund).kind == OutcomeKind.SYNCED
    memos = requests.get(f"{sim.url}/_sim/creditmemos", timeout=5).json()
    refunds = requests.get(f"{sim.url}/_sim/refunds", timeout=5).json()
    assert [(m["doc_number"], m["total"]) for m in memos] == [("FL-1-C1", "20.00")]
    assert [(r["doc_number"], r["total"], r["deposit_account"]) for r in refunds] == [
        ("RF-1", "30.00", "35")
    ]


def test_deleted_invoice_reads_as_not_found(
    sqlite_url: str, sim: QboSimulator, clock: FixedClock
) -> None:
    """An invoice deleted by hand (via /_sim/entity) reads as absent, not as a failure."""
    gw = make_rig(sqlite_url, sim, clock).gateway()
    created = gw.push_invoice(draft(2))
    assert created.qbo_id
    requests.post(
        f"{sim.url}/_sim/entity", json={"entity": "Invoice", "id": created.qbo_id, "deleted": True},
        timeout=5,
    ).raise_for_status()  # fmt: skip
    read = gw.read_invoice(draft(2).event_id, created.qbo_id)
    assert read.found is None and read.failure is None


def test_update_or_void_of_a_deleted_invoice_says_it_is_gone(
    sqlite_url: str, sim: QboSimulator, clock: FixedClock
) -> None:
    """QuickBooks' Object Not Found to an update or a void means the invoice itself was deleted
    since it was read: the gateway says so (object_gone, changed_in_quickbooks), not that a
    mapping is inactive."""
    gw = make_rig(sqlite_url, sim, clock).gateway()
    created = gw.push_invoice(draft(3))
    assert created.qbo_id
    event_id = draft(3).event_id
    requests.post(
        f"{sim.url}/_sim/entity", json={"entity": "Invoice", "id": created.qbo_id, "deleted": True},
        timeout=5,
    ).raise_for_status()  # fmt: skip
    change = InvoiceChange(
        event_id, "upd-3", created.qbo_id, "0", "1", (line("150.00"),), Decimal("150.00")
    )
    for outcome in (
        gw.update_invoice(change),
        gw.void_invoice(event_id, created.qbo_id, "0", "void-3"),
    ):
        assert outcome.object_gone and not outcome.stale_object
        assert outcome.kind == OutcomeKind.ACTION_REQUIRED
        assert outcome.reason_code == ReasonCode.CHANGED_IN_QUICKBOOKS
        assert "Object Not Found" in outcome.message and outcome.missing == ()
