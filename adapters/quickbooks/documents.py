"""Drafts as python-quickbooks objects, and the deterministic requestid of a batch."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from quickbooks.objects.base import CustomerMemo, LinkedTxn, Ref
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.payment import Payment, PaymentLine

from domain.ports import InvoiceDraft, PaymentDraft

BATCH_NAMESPACE = uuid.UUID("0b7c6a52-3d3e-4e4a-9a43-51c1f0a5d9e2")


def batch_request_id(drafts: Sequence[InvoiceDraft]) -> str:
    """A deterministic requestid (36 chars) for one batch of drafts."""
    return str(uuid.uuid5(BATCH_NAMESPACE, ",".join(sorted(d.request_id for d in drafts))))


def _ref(value: str) -> Ref:
    """A reference to a QuickBooks entity by id."""
    ref = Ref()
    ref.value = value
    return ref


def build_invoice(draft: InvoiceDraft) -> Invoice:
    """The python-quickbooks Invoice for a draft."""
    invoice = Invoice()
    invoice.DocNumber = draft.doc_number
    invoice.TxnDate = draft.txn_date.isoformat()
    invoice.CustomerRef = _ref(draft.customer_id)
    for line in draft.lines:
        detail = SalesItemLineDetail()
        detail.ItemRef = _ref(line.item_id)
        detail.Qty = line.quantity
        detail.UnitPrice = line.unit_price
        sales = SalesItemLine()
        sales.Amount = line.amount
        sales.Description = line.description
        sales.SalesItemLineDetail = detail
        invoice.Line.append(sales)
    if draft.term_id:
        invoice.SalesTermRef = _ref(draft.term_id)
    if draft.customer_memo:
        memo = CustomerMemo()
        memo.value = draft.customer_memo
        invoice.CustomerMemo = memo
    if draft.private_note:
        invoice.PrivateNote = draft.private_note
    return invoice


def build_payment(draft: PaymentDraft) -> Payment:
    """The python-quickbooks Payment for a draft."""
    payment = Payment()
    payment.TotalAmt = draft.amount
    payment.TxnDate = draft.txn_date.isoformat()
    payment.CustomerRef = _ref(draft.customer_id)
    payment.DepositToAccountRef = _ref(draft.deposit_account_id)
    if draft.payment_method_id:
        payment.PaymentMethodRef = _ref(draft.payment_method_id)
    if draft.private_note:
        payment.PrivateNote = draft.private_note
    if draft.linked_invoice_id:
        line = PaymentLine()
        line.Amount = draft.amount
        linked = LinkedTxn()
        linked.TxnId = draft.linked_invoice_id
        linked.TxnType = "Invoice"
        line.LinkedTxn.append(linked)
        payment.Line.append(line)
    return payment
