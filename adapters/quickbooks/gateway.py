"""QuickBooksGateway: domain.ports.AccountingGateway for one school (one QBO realm).

Every call goes through the school's RealmSession (session.py): the realm's rate budget, token
refresh under the school's lock with the rotated tokens persisted before use, and bounded
retries of failures that surely did not reach QuickBooks. Every failure becomes a PushOutcome
through classify.classify; invoices are created one by one with their requestid or through
the batch endpoint, 30 per request, with per-item results matched back to their drafts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from quickbooks.objects.invoice import Invoice

from adapters.quickbooks.classify import Verdict, classify, in_place_change, parse_fault_object
from adapters.quickbooks.client import TimedQuickBooks
from adapters.quickbooks.documents import (
    batch_request_id,
    build_credit,
    build_customer,
    build_invoice,
    build_invoice_change,
    build_payment,
)
from adapters.quickbooks.session import (
    NO_EVENT,
    GatewayHooks,
    RealmSession,
    TokenStore,
    for_event,
)
from domain.customers import CustomerCandidate, CustomerCreated, CustomerDraft, CustomerLookup
from domain.ports import (
    CompanyInfo,
    ConnectionCheck,
    CreditDraft,
    FoundInvoice,
    InvoiceChange,
    InvoiceDraft,
    InvoiceRead,
    LookupResult,
    OutcomeKind,
    PaymentDraft,
    PushOutcome,
    QboInvoice,
)
from domain.qbo_lists import ACCOUNT, CUSTOMER, LIST_ENTITIES, QboObject
from domain.sync import found_by_doc_number

__all__ = [
    "BATCH_SIZE",
    "GatewayHooks",
    "QuickBooksGateway",
    "RealmSession",
    "TokenStore",
    "batch_request_id",
]

BATCH_SIZE = 30
LIST_PAGE = 1000  # QuickBooks' largest MAXRESULTS


def _list_object(entity: str, row: dict[str, Any]) -> QboObject:
    """One row of a list query as a QboObject."""
    name = row.get("DisplayName") or row.get("FullyQualifiedName") or row.get("Name") or ""
    email = (row.get("PrimaryEmailAddr") or {}).get("Address") if entity == CUSTOMER else None
    return QboObject(
        entity=entity,
        id=str(row.get("Id")),
        name=str(name),
        active=bool(row.get("Active", True)),
        type=str(row["AccountType"]) if entity == ACCOUNT and row.get("AccountType") else None,
        email=str(email) if email else None,
    )


CENT = Decimal("0.01")


class QuickBooksGateway:
    """AccountingGateway over python-quickbooks for one school."""

    def __init__(self, session: RealmSession) -> None:
        self.session = session
        self.school = session.school

    def budget_room(self, within: float = 0.0) -> int:
        """Single requests the realm's rate budget lets start within `within` seconds."""
        return self.session.budget.available(within)

    def budget_wait(self, *, batch: bool) -> float:
        """Seconds until the realm's rate budget lets a (batch) request start; 0: now."""
        return self.session.budget.wait_time(batch=batch)

    def budget_settles_in(self) -> float:
        """Seconds until another worker may call the realm on a fresh budget of its own
        without going over QBO's limits (0: now; RateBudget.settles_in)."""
        return self.session.budget.settles_in()

    def push_invoice(self, draft: InvoiceDraft) -> PushOutcome:
        """Create one invoice with requestid = draft.request_id (a replay returns the original)."""
        invoice = build_invoice(draft)
        result = self.session.run(
            lambda qb: invoice.save(qb=qb, request_id=draft.request_id),
            event_id=draft.event_id,
            is_create=True,
        )
        if isinstance(result, Verdict):
            return self._resolve_duplicate(draft, result)
        return PushOutcome(
            event_id=draft.event_id,
            kind=OutcomeKind.SYNCED,
            qbo_id=str(result.Id),
            doc_number=str(result.DocNumber or draft.doc_number),
            http_status=200,
        )

    def push_invoices(self, drafts: Sequence[InvoiceDraft]) -> list[PushOutcome]:
        """Create invoices through the batch endpoint, 30 per request; outcomes in draft order."""
        outcomes: list[PushOutcome] = []
        for start in range(0, len(drafts), BATCH_SIZE):
            outcomes.extend(self._push_batch(list(drafts[start : start + BATCH_SIZE])))
        return outcomes

    def _push_batch(self, drafts: list[InvoiceDraft]) -> list[PushOutcome]:
        if not drafts:
            return []
        by_bid = {d.request_id: d for d in drafts}
        body = json.dumps(
            {
                "BatchItemRequest": [
                    {
                        "bId": d.request_id,
                        "operation": "create",
                        "Invoice": json.loads(build_invoice(d).to_json()),
                    }
                    for d in drafts
                ]
            }
        )
        request_id = batch_request_id(drafts)

        def send(qb: TimedQuickBooks) -> Any:
            url = f"{qb.api_url}/company/{qb.company_id}/batch"
            return qb.post(url, body, request_id=request_id)

        result = self.session.run(send, event_id=NO_EVENT, is_create=True, batch=True)
        if isinstance(result, Verdict):
            return [self._resolve_duplicate(d, for_event(result, d.event_id)) for d in drafts]
        answered: dict[str, PushOutcome] = {}
        for item in result.get("BatchItemResponse") or []:
            draft = by_bid.get(str(item.get("bId")))
            if draft is None:
                continue
            answered[draft.request_id] = self._batch_item(draft, item)
        missing = "QuickBooks returned no result for this invoice in the batch"
        return [
            answered.get(d.request_id)
            or PushOutcome(event_id=d.event_id, kind=OutcomeKind.UNCERTAIN, message=missing)
            for d in drafts
        ]

    def _batch_item(self, draft: InvoiceDraft, item: dict[str, Any]) -> PushOutcome:
        invoice = item.get("Invoice")
        if isinstance(invoice, dict) and invoice.get("Id"):
            return PushOutcome(
                event_id=draft.event_id,
                kind=OutcomeKind.SYNCED,
                qbo_id=str(invoice["Id"]),
                doc_number=str(invoice.get("DocNumber") or draft.doc_number),
                http_status=200,
            )
        failure = parse_fault_object(200, item)  # the item's {"Fault": ...}, as a body's
        verdict = classify(failure, event_id=draft.event_id, is_create=True)
        return self._resolve_duplicate(draft, verdict)

    def _resolve_duplicate(self, draft: InvoiceDraft, verdict: Verdict) -> PushOutcome:
        """The final outcome; a 6140 is looked up by DocNumber and settled here, once."""
        if not verdict.lookup:
            return verdict.outcome
        found = self.find_invoice(draft.doc_number).found
        if found is None:  # absent, or the lookup failed: QuickBooks' refusal stands
            return verdict.outcome
        return found_by_doc_number(draft, found, verdict.outcome)

    def push_payment(self, draft: PaymentDraft) -> PushOutcome:
        """Create one payment (linked to its invoice when known) with its request id."""
        payment = build_payment(draft)
        result = self.session.run(
            lambda qb: payment.save(qb=qb, request_id=draft.request_id),
            event_id=draft.event_id,
            is_create=True,
        )
        if isinstance(result, Verdict):
            return result.outcome
        return PushOutcome(
            event_id=draft.event_id, kind=OutcomeKind.SYNCED, qbo_id=str(result.Id), http_status=200
        )

    def find_invoice(self, doc_number: str) -> LookupResult:
        """Query an invoice by DocNumber (a metered read)."""
        select = f"SELECT * FROM Invoice WHERE DocNumber = '{_quote(doc_number)}'"
        result = self.session.run(
            lambda qb: Invoice.query(select, qb=qb), event_id=NO_EVENT, is_create=False
        )
        if isinstance(result, Verdict):
            return LookupResult(failure=result.outcome)
        for invoice in result:
            if str(invoice.DocNumber) == doc_number:
                customer = invoice.CustomerRef.value if invoice.CustomerRef else ""
                return LookupResult(
                    found=FoundInvoice(
                        qbo_id=str(invoice.Id),
                        doc_number=doc_number,
                        customer_id=str(customer),
                        total=Decimal(str(invoice.TotalAmt or "0")),
                    )
                )
        return LookupResult()

    # --- corrections (domain.ports.CorrectionGateway) -------------------------------------------

    def read_invoice(self, event_id: uuid.UUID, qbo_id: str) -> InvoiceRead:
        """Read one invoice by id; a 610 (deleted in QuickBooks) reads as not found."""

        def read(qb: TimedQuickBooks) -> Any:
            return qb.get_single_object("Invoice", qbo_id)

        result = self.session.run(read, event_id=event_id, is_create=False)
        if isinstance(result, Verdict):
            if result.outcome.code == "610":
                return InvoiceRead()
            return InvoiceRead(failure=result.outcome)
        return InvoiceRead(found=_qbo_invoice(result.get("Invoice") or {}))

    def _post(
        self,
        event_id: uuid.UUID,
        entity: str,
        body: dict[str, Any],
        request_id: str,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any] | PushOutcome:
        def send(qb: TimedQuickBooks) -> Any:
            url = f"{qb.api_url}/company/{qb.company_id}/{entity.lower()}"
            return qb.post(url, json.dumps(body, default=str), params=params, request_id=request_id)

        result = self.session.run(send, event_id=event_id, is_create=True)
        if isinstance(result, Verdict):
            return result.outcome
        record: dict[str, Any] = result.get(entity) or {}
        return record

    def update_invoice(self, change: InvoiceChange) -> PushOutcome:
        """Sparse update with the invoice's SyncToken and a request id (stale_object when the
        token is old, object_gone when the invoice was deleted in QuickBooks)."""
        body = build_invoice_change(change)
        result = self._post(change.event_id, "Invoice", body, change.request_id)
        return in_place_change(_saved(change.event_id, result))

    def void_invoice(
        self, event_id: uuid.UUID, qbo_id: str, sync_token: str, request_id: str
    ) -> PushOutcome:
        """Void one invoice (operation=void with Id and SyncToken; stale_object, object_gone as
        for an update)."""
        body = {"Id": qbo_id, "SyncToken": sync_token, "sparse": True}
        result = self._post(event_id, "Invoice", body, request_id, params={"operation": "void"})
        return in_place_change(_saved(event_id, result))

    def push_credit_memo(self, draft: CreditDraft) -> PushOutcome:
        """Create one CreditMemo with its request id."""
        body = json.loads(build_credit(draft, refund=False).to_json())
        return _saved(
            draft.event_id, self._post(draft.event_id, "CreditMemo", body, draft.request_id)
        )

    def push_refund_receipt(self, draft: CreditDraft) -> PushOutcome:
        """Create one RefundReceipt with its request id."""
        body = json.loads(build_credit(draft, refund=True).to_json())
        result = self._post(draft.event_id, "RefundReceipt", body, draft.request_id)
        return _saved(draft.event_id, result)

    def find_document(self, entity: str, doc_number: str) -> LookupResult:
        """Query an Invoice, CreditMemo or RefundReceipt by DocNumber (a metered read)."""
        if entity not in ("Invoice", "CreditMemo", "RefundReceipt"):
            raise ValueError(f"entity: cannot look up {entity!r}")
        escaped = doc_number.replace("\\", "\\\\").replace("'", "\\'")
        select = f"SELECT * FROM {entity} WHERE DocNumber = '{escaped}'"

        def read(qb: TimedQuickBooks) -> Any:
            return qb.query(select)

        result = self.session.run(read, event_id=NO_EVENT, is_create=False)
        if isinstance(result, Verdict):
            return LookupResult(failure=result.outcome)
        for row in (result.get("QueryResponse") or {}).get(entity) or []:
            if str(row.get("DocNumber")) == doc_number:
                return LookupResult(
                    found=FoundInvoice(
                        qbo_id=str(row.get("Id")),
                        doc_number=doc_number,
                        customer_id=str((row.get("CustomerRef") or {}).get("value", "")),
                        total=Decimal(str(row.get("TotalAmt") or "0")),
                    )
                )
        return LookupResult()

    def inactive_references(
        self, item_ids: Sequence[str], customer_ids: Sequence[str]
    ) -> frozenset[str] | None:
        """Which of these Items/Customers QBO holds as inactive ("Item:3"); None if unknown.

        Two metered reads: asked only after a 610 fault, to name the mapping to fix.
        """
        found: set[str] = set()
        for entity, ids in (("Item", item_ids), ("Customer", customer_ids)):
            if not ids:
                continue
            select = f"SELECT * FROM {entity} WHERE Active = false"

            def read(qb: TimedQuickBooks, select: str = select) -> Any:
                return qb.query(select)

            result = self.session.run(read, event_id=NO_EVENT, is_create=False)
            if isinstance(result, Verdict):
                return None
            rows = (result.get("QueryResponse") or {}).get(entity) or []
            found.update(f"{entity}:{row.get('Id')}" for row in rows if str(row.get("Id")) in ids)
        return frozenset(found)

    def read_list(self, entity: str) -> list[QboObject] | PushOutcome:
        """Every object of one QuickBooks list, active or not (metered reads, 1000 a page)."""
        objects: list[QboObject] = []
        start = 1
        while True:
            select = (
                f"SELECT * FROM {entity} WHERE Active IN (true, false) "
                f"STARTPOSITION {start} MAXRESULTS {LIST_PAGE}"
            )

            def read(qb: TimedQuickBooks, select: str = select) -> Any:
                return qb.query(select)

            result = self.session.run(read, event_id=NO_EVENT, is_create=False)
            if isinstance(result, Verdict):
                return result.outcome
            rows = (result.get("QueryResponse") or {}).get(entity) or []
            objects.extend(_list_object(entity, row) for row in rows if isinstance(row, dict))
            if len(rows) < LIST_PAGE:
                return objects
            start += LIST_PAGE

    def read_lists(
        self, entities: Sequence[str] = LIST_ENTITIES
    ) -> dict[str, list[QboObject]] | PushOutcome:
        """Items, Customers, Accounts, Terms and PaymentMethods (or the first failure)."""
        found: dict[str, list[QboObject]] = {}
        for entity in entities:
            objects = self.read_list(entity)
            if isinstance(objects, PushOutcome):
                return objects
            found[entity] = objects
        return found

    def find_customers(self, display_name: str) -> CustomerLookup:
        """Active customers with this DisplayName (one metered read)."""
        select = f"SELECT * FROM Customer WHERE DisplayName = '{_quote(display_name)}'"

        def read(qb: TimedQuickBooks) -> Any:
            return qb.query(select)

        result = self.session.run(read, event_id=NO_EVENT, is_create=False)
        if isinstance(result, Verdict):
            return CustomerLookup(failure=result.outcome)
        rows = (result.get("QueryResponse") or {}).get("Customer") or []
        return CustomerLookup(
            candidates=tuple(_customer(row) for row in rows if isinstance(row, dict))
        )

    def create_customer(self, draft: CustomerDraft) -> CustomerCreated:
        """Create a Customer with requestid = draft.request_id (a replay returns the original);
        QBO's 6240 (the name exists) comes back as duplicate_name."""
        customer = build_customer(draft)
        result = self.session.run(
            lambda qb: customer.save(qb=qb, request_id=draft.request_id),
            event_id=NO_EVENT,
            is_create=True,
        )
        if isinstance(result, Verdict):
            return CustomerCreated(
                failure=result.outcome, duplicate_name=result.outcome.code == "6240"
            )
        email = result.PrimaryEmailAddr.Address if result.PrimaryEmailAddr else None
        return CustomerCreated(
            customer=CustomerCandidate(
                id=str(result.Id),
                display_name=str(result.DisplayName or draft.display_name),
                email=str(email) if email else None,
                active=bool(result.Active),
            )
        )

    def custom_txn_numbers(self) -> bool | None:
        """SalesFormsPrefs.CustomTxnNumbers of the company (None when it cannot be read).

        Off, QuickBooks numbers invoices itself and ignores the DocNumber we send.
        """

        def read(qb: TimedQuickBooks) -> Any:
            return qb.get(f"{qb.api_url}/company/{qb.company_id}/preferences")

        result = self.session.run(read, event_id=NO_EVENT, is_create=False)
        if isinstance(result, Verdict) or not isinstance(result, dict):
            return None
        prefs = (result.get("Preferences") or {}).get("SalesFormsPrefs") or {}
        value = prefs.get("CustomTxnNumbers")
        return value if isinstance(value, bool) else None

    def company_info(self) -> CompanyInfo | PushOutcome:
        """CompanyInfo of the realm, or the failure outcome."""

        def read(qb: TimedQuickBooks) -> Any:
            return qb.get_single_object("CompanyInfo", qb.company_id)

        result = self.session.run(read, event_id=NO_EVENT, is_create=False)
        if isinstance(result, Verdict):
            return result.outcome
        info = result.get("CompanyInfo") or {}
        country = info.get("Country") or (info.get("CompanyAddr") or {}).get("Country") or ""
        return CompanyInfo(company_name=str(info.get("CompanyName") or ""), country=str(country))

    def test_connection(self) -> ConnectionCheck:
        """Read CompanyInfo live: 'Connected to <company> (<country>)' or QBO's message."""
        info = self.company_info()
        if isinstance(info, PushOutcome):
            return ConnectionCheck(ok=False, message=info.message, reason_code=info.reason_code)
        return ConnectionCheck(
            ok=True,
            company=info,
            message=f"Connected to {info.company_name} ({info.country})",
        )

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()


def _qbo_invoice(record: dict[str, Any]) -> QboInvoice:
    total = Decimal(str(record.get("TotalAmt") or "0")).quantize(CENT)
    note = str(record.get("PrivateNote") or "")
    return QboInvoice(
        qbo_id=str(record.get("Id") or ""),
        doc_number=str(record.get("DocNumber") or ""),
        sync_token=str(record.get("SyncToken") or "0"),
        customer_id=str((record.get("CustomerRef") or {}).get("value", "")),
        total=total,
        balance=Decimal(str(record.get("Balance") or "0")).quantize(CENT),
        voided=total == 0 and note.startswith("Voided"),
    )


def _saved(event_id: uuid.UUID, result: dict[str, Any] | PushOutcome) -> PushOutcome:
    if isinstance(result, PushOutcome):
        return result
    return PushOutcome(
        event_id=event_id,
        kind=OutcomeKind.SYNCED,
        qbo_id=str(result.get("Id") or ""),
        doc_number=str(result.get("DocNumber") or "") or None,
        http_status=200,
    )


def _quote(value: str) -> str:
    """A string literal's inside for a QBO query (backslash and quote escaped)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _customer(row: dict[str, Any]) -> CustomerCandidate:
    email = (row.get("PrimaryEmailAddr") or {}).get("Address")
    return CustomerCandidate(
        id=str(row.get("Id")),
        display_name=str(row.get("DisplayName") or ""),
        email=str(email) if email else None,
        active=bool(row.get("Active", True)),
    )
