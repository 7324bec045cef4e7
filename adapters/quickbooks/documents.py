"""Drafts as python-quickbooks objects, and the deterministic requestid of a batch."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from quickbooks.objects.base import CustomerMemo, EmailAddress, LinkedTxn, Ref
from quickbooks.objects.creditmemo import CreditMemo
from quickbooks.objects.customer import Customer
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.payment import Payment, PaymentLine
from quickbooks.objects.refundreceipt import RefundReceipt

from domain.customers import CustomerDraft
from domain.ports import CreditDraft, InvoiceChange, InvoiceDraft, InvoiceLine, PaymentDraft

BATCH_NAMESPACE = uuid.UUID("0b7c6a52-3d3e-4e4a-9a43-51c1f0a5d9e2")


def batch_request_id(drafts: Sequence[InvoiceDraft]) -> str:
    """A deterministic requestid (36 chars) for one batch of drafts."""
    return str(uuid.uuid5(BATCH_NAMESPACE, ",".join(sorted(d.request_id for d in drafts))))


def _ref(value: str) -> Ref:
    """A reference to a QuickBooks entity by id."""
    ref = Ref()
    ref.value = value
    return ref


def _sales_line(line: InvoiceLine) -> SalesItemLine:
    detail = SalesItemLineDetail()
    detail.ItemRef = _ref(line.item_id)
    detail.Qty = line.quantity
    detail.UnitPrice = line.unit_price
    sales = SalesItemLine()
    sales.Amount = line.amount
    sales.Description = line.description
    sales.SalesItemLineDetail = detail
    return sales


def build_invoice(draft: InvoiceDraft) -> Invoice:
    """The python-quickbooks Invoice for a draft."""
    invoice = Invoice()
    invoice.DocNumber = draft.doc_number
    invoice.TxnDate = draft.txn_date.isoformat()
    invoice.CustomerRef = _ref(draft.customer_id)
    for line in draft.lines:
        invoice.Line.append(_sales_line(line))
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


def build_invoice_change(change: InvoiceChange) -> dict[str, object]:
    """The sparse update body: Id, SyncToken, the new lines and customer."""
    invoice = Invoice()
    invoice.CustomerRef = _ref(change.customer_id)
    for line in change.lines:
        invoice.Line.append(_sales_line(line))
    body: dict[str, object] = json.loads(invoice.to_json())
    sparse: dict[str, object] = {
        "Id": change.qbo_id,
        "SyncToken": change.sync_token,
        "sparse": True,
        "CustomerRef": body["CustomerRef"],
        "Line": body["Line"],
    }
    if change.private_note:
        sparse["PrivateNote"] = change.private_note
    return sparse


def build_credit(draft: CreditDraft, *, refund: bool) -> CreditMemo | RefundReceipt:
    """The python-quickbooks CreditMemo (or RefundReceipt) for a draft."""
    document: CreditMemo | RefundReceipt = RefundReceipt() if refund else CreditMemo()
    document.DocNumber = draft.doc_number
    document.TxnDate = draft.txn_date.isoformat()
    document.CustomerRef = _ref(draft.customer_id)
    document.TotalAmt = draft.total
    for line in draft.lines:
        document.Line.append(_sales_line(line))
    if draft.private_note:
        document.PrivateNote = draft.private_note
    if isinstance(document, RefundReceipt):
        if draft.deposit_account_id:
            document.DepositToAccountRef = _ref(draft.deposit_account_id)
        if draft.payment_method_id:
            document.PaymentMethodRef = _ref(draft.payment_method_id)
    return document


def build_customer(draft: CustomerDraft) -> Customer:
    """The python-quickbooks Customer for a new student: DisplayName and, when known, email."""
    customer = Customer()
    customer.DisplayName = draft.display_name
    given, _, family = draft.display_name.strip().rpartition(" ")
    if given and family:
        customer.GivenName, customer.FamilyName = given[:100], family[:100]
    if draft.email:
        email = EmailAddress()
        email.Address = draft.email
        customer.PrimaryEmailAddr = email
    customer.Taxable = False
    return customer
