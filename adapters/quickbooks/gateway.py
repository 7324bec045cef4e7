"""QuickBooksGateway: domain.ports.AccountingGateway for one school (one QBO realm).

Every call goes through the realm's rate budget, refreshes the access token when it expires
within 5 minutes (and once on a 401/3200) under the school's refresh lock, persists the rotated
token set in the vault before using it, and turns every failure into a PushOutcome through
classify.classify. Only failures that surely did not reach QBO are retried inside a call
(tenacity, bounded); everything else is returned for the worker to record.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import structlog
from quickbooks.objects.base import CustomerMemo, LinkedTxn, Ref
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.payment import Payment, PaymentLine
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from adapters.quickbooks.classify import Failure, Verdict, classify
from adapters.quickbooks.client import QboCallFailed, QboClient, TimedQuickBooks
from adapters.quickbooks.oauth import OAuthClient, QboAuthError, oauth_client
from adapters.quickbooks.ratelimit import BudgetLimits, RateBudget
from adapters.quickbooks.settings import QboSettings
from adapters.vault import TokenSet
from domain.ports import (
    CompanyInfo,
    ConnectionCheck,
    FoundInvoice,
    InvoiceDraft,
    LookupResult,
    OutcomeKind,
    PaymentDraft,
    PushOutcome,
    ReasonCode,
    TokenExpiries,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

BATCH_SIZE = 30
REFRESH_MARGIN = timedelta(minutes=5)
NO_EVENT = uuid.UUID(int=0)
BATCH_NAMESPACE = uuid.UUID("0b7c6a52-3d3e-4e4a-9a43-51c1f0a5d9e2")
NOT_CONNECTED_MESSAGE = "QuickBooks is not connected. Connect QuickBooks to start invoicing."


class TokenStore(Protocol):
    """Where a school's tokens live (adapters.vault.TokenVault)."""

    def get_tokens(self, school: str) -> TokenSet | None:
        """The token set, or None."""
        ...

    def put_tokens(self, school: str, tokens: TokenSet) -> None:
        """Replace the token set atomically."""
        ...

    def refresh_lock(self, school: str) -> AbstractContextManager[None]:
        """Exclusive refresh of one school's tokens (threads and processes)."""
        ...


@dataclass
class GatewayHooks:
    """What the caller records when tokens change (Connection events)."""

    on_refreshed: Callable[[TokenExpiries], None] = lambda _e: None
    on_expired: Callable[[str], None] = lambda _m: None
    on_auth_failed: Callable[[str], None] = lambda _m: None


class _Stop(Exception):
    """End the call with this verdict."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.outcome.message)
        self.verdict = verdict


class _RetryNow(Exception):
    """Surely not performed: try again inside this call."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.outcome.message)
        self.verdict = verdict


def batch_request_id(drafts: Sequence[InvoiceDraft]) -> str:
    """A deterministic requestid (36 chars) for one batch of drafts."""
    return str(uuid.uuid5(BATCH_NAMESPACE, ",".join(sorted(d.request_id for d in drafts))))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class QuickBooksGateway:
    """AccountingGateway over python-quickbooks for one school."""

    def __init__(
        self,
        *,
        settings: QboSettings,
        school: str,
        tokens: TokenStore,
        oauth: OAuthClient | None = None,
        budget: RateBudget | None = None,
        hooks: GatewayHooks | None = None,
        now: Callable[[], datetime] = _utcnow,
        max_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.school = school
        self.tokens = tokens
        self._oauth = oauth
        self.budget = budget or RateBudget(BudgetLimits(minute_seconds=settings.minute_seconds))
        self.hooks = hooks or GatewayHooks()
        self.now = now
        self.max_attempts = max_attempts
        self.sleep = sleep
        self._client: QboClient | None = None
        self._expired: str | None = None

    @property
    def oauth(self) -> OAuthClient:
        """The (cached) OAuth client."""
        if self._oauth is None:
            self._oauth = oauth_client(self.settings)
        return self._oauth

    # --- tokens ---------------------------------------------------------------------------------

    def _current(self) -> TokenSet:
        if self._expired is not None:
            raise _Stop(self._auth_expired(self._expired))
        tokens = self.tokens.get_tokens(self.school)
        if tokens is None:
            raise _Stop(
                Verdict(
                    PushOutcome(
                        event_id=NO_EVENT,
                        kind=OutcomeKind.ACTION_REQUIRED,
                        reason_code=ReasonCode.NOT_CONNECTED,
                        message=NOT_CONNECTED_MESSAGE,
                    )
                )
            )
        if tokens.access_expires_at - self.now() <= REFRESH_MARGIN:
            tokens = self._refresh(tokens, force=False)
        return tokens

    def _auth_expired(self, message: str) -> Verdict:
        return Verdict(
            PushOutcome(
                event_id=NO_EVENT,
                kind=OutcomeKind.ACTION_REQUIRED,
                reason_code=ReasonCode.AUTH_EXPIRED,
                code="invalid_grant",
                message=message,
            )
        )

    def _refresh(self, stale: TokenSet, *, force: bool) -> TokenSet:
        """Refresh under the school's lock; persist before use; hooks record expiries."""
        with self.tokens.refresh_lock(self.school):
            current = self.tokens.get_tokens(self.school)
            if current is None:
                return self._current()  # disconnected meanwhile: raises _Stop
            fresh = current.access_expires_at - self.now() > REFRESH_MARGIN
            if fresh and (not force or current.access_token != stale.access_token):
                return current  # another thread or process refreshed already
            try:
                new = self.oauth.refresh(current.refresh_token, current.realm, self.now())
            except QboAuthError as exc:
                verdict = classify(exc.failure, event_id=NO_EVENT, is_create=False)
                if exc.invalid_grant:
                    message = (
                        "QuickBooks refused the refresh token (invalid_grant): "
                        f"{exc.failure.message or 'expired or revoked'}. Reconnect QuickBooks."
                    )
                    self._expired = message
                    log.warning("qbo_refresh_token_expired", school=self.school)
                    self._safe_hook(self.hooks.on_expired, message)
                    raise _Stop(self._auth_expired(message)) from None
                raise _Stop(verdict) from None
            self.tokens.put_tokens(self.school, new)
            log.info(
                "qbo_tokens_refreshed",
                school=self.school,
                realm=new.realm,
                access_expires_at=new.access_expires_at.isoformat(),
            )
        self._safe_hook(
            self.hooks.on_refreshed,
            TokenExpiries(new.access_expires_at, new.refresh_expires_at, new.hard_expires_at),
        )
        return new

    def _safe_hook(self, hook: Callable[[Any], None], value: Any) -> None:
        try:
            hook(value)
        except Exception as exc:  # recording must not lose the token already persisted
            log.error("qbo_hook_failed", school=self.school, error=type(exc).__name__)

    def _client_for(self, tokens: TokenSet) -> QboClient:
        if self._client is None or self._client.realm != tokens.realm:
            self._client = QboClient(self.settings, tokens.realm, tokens.access_token)
        else:
            self._client.set_access_token(tokens.access_token)
        return self._client

    # --- one call -------------------------------------------------------------------------------

    def _run(
        self,
        operation: Callable[[TimedQuickBooks], T],
        *,
        event_id: uuid.UUID,
        is_create: bool,
        batch: bool = False,
    ) -> T | Verdict:
        """Run an operation with refresh, rate budget and bounded retries; a Verdict on failure."""
        refreshed = False

        def attempt() -> T:
            nonlocal refreshed
            tokens = self._current()
            client = self._client_for(tokens)
            with self.budget.slot(batch=batch):
                try:
                    return client.call(operation)
                except QboCallFailed as exc:
                    failure: Failure = exc.failure
            verdict = classify(
                failure,
                event_id=event_id,
                is_create=is_create,
                minute_seconds=self.settings.minute_seconds,
            )
            log.info(
                "qbo_call_failed",
                school=self.school,
                realm=tokens.realm,
                event_id=str(event_id),
                code=failure.code,
                http_status=failure.http_status,
                kind=verdict.outcome.kind.value,
            )
            if verdict.refresh and not refreshed:
                refreshed = True
                self._refresh(tokens, force=True)
                raise _RetryNow(verdict)
            if verdict.outcome.retry_after:
                self.budget.pause(verdict.outcome.retry_after)
            if verdict.retry_now:
                raise _RetryNow(verdict)
            if verdict.outcome.reason_code == ReasonCode.AUTH_FAILED:
                self._safe_hook(self.hooks.on_auth_failed, verdict.outcome.message)
            raise _Stop(verdict)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.settings.scaled(0.5), max=self.settings.scaled(5), jitter=0.1
            ),
            retry=retry_if_exception_type(_RetryNow),
            sleep=self.sleep,
        )
        try:
            return retrying(attempt)
        except _Stop as stop:
            return _for_event(stop.verdict, event_id)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            assert isinstance(last, _RetryNow)
            return _for_event(last.verdict, event_id)

    # --- AccountingGateway ----------------------------------------------------------------------

    def push_invoice(self, draft: InvoiceDraft) -> PushOutcome:
        """Create one invoice with requestid = draft.request_id (a replay returns the original)."""
        invoice = build_invoice(draft)
        result = self._run(
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

        result = self._run(send, event_id=NO_EVENT, is_create=True, batch=True)
        if isinstance(result, Verdict):
            return [self._resolve_duplicate(d, _for_event(result, d.event_id)) for d in drafts]
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
        fault = item.get("Fault") or {}
        errors = fault.get("Error") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
        failure = Failure(
            http_status=200,
            code=str(first.get("code") or ""),
            message=str(first.get("Message") or ""),
            detail=str(first.get("Detail") or ""),
            element=str(first.get("element") or ""),
        )
        verdict = classify(failure, event_id=draft.event_id, is_create=True)
        return self._resolve_duplicate(draft, verdict)

    def _resolve_duplicate(self, draft: InvoiceDraft, verdict: Verdict) -> PushOutcome:
        """6140: the same customer and total under this DocNumber counts as synced."""
        if not verdict.lookup:
            return verdict.outcome
        found = self.find_invoice(draft.doc_number)
        if (
            found.found is not None
            and found.found.customer_id == draft.customer_id
            and found.found.total == draft.total
        ):
            return PushOutcome(
                event_id=draft.event_id,
                kind=OutcomeKind.SYNCED,
                qbo_id=found.found.qbo_id,
                doc_number=found.found.doc_number,
            )
        return verdict.outcome

    def push_payment(self, draft: PaymentDraft) -> PushOutcome:
        """Create one payment (linked to its invoice when known) with its request id."""
        payment = build_payment(draft)
        result = self._run(
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
        escaped = doc_number.replace("\\", "\\\\").replace("'", "\\'")
        select = f"SELECT * FROM Invoice WHERE DocNumber = '{escaped}'"
        result = self._run(
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

            result = self._run(read, event_id=NO_EVENT, is_create=False)
            if isinstance(result, Verdict):
                return None
            rows = (result.get("QueryResponse") or {}).get(entity) or []
            found.update(f"{entity}:{row.get('Id')}" for row in rows if str(row.get("Id")) in ids)
        return frozenset(found)

    def company_info(self) -> CompanyInfo | PushOutcome:
        """CompanyInfo of the realm, or the failure outcome."""

        def read(qb: TimedQuickBooks) -> Any:
            return qb.get_single_object("CompanyInfo", qb.company_id)

        result = self._run(read, event_id=NO_EVENT, is_create=False)
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
        if self._client is not None:
            self._client.close()


def _for_event(verdict: Verdict, event_id: uuid.UUID) -> Verdict:
    return replace(verdict, outcome=replace(verdict.outcome, event_id=event_id))


def build_invoice(draft: InvoiceDraft) -> Invoice:
    """The python-quickbooks Invoice for a draft."""
    invoice = Invoice()
    invoice.DocNumber = draft.doc_number
    invoice.TxnDate = draft.txn_date.isoformat()
    customer = Ref()
    customer.value = draft.customer_id
    invoice.CustomerRef = customer
    for line in draft.lines:
        detail = SalesItemLineDetail()
        item = Ref()
        item.value = line.item_id
        detail.ItemRef = item
        detail.Qty = line.quantity
        detail.UnitPrice = line.unit_price
        sales = SalesItemLine()
        sales.Amount = line.amount
        sales.Description = line.description
        sales.SalesItemLineDetail = detail
        invoice.Line.append(sales)
    if draft.term_id:
        term = Ref()
        term.value = draft.term_id
        invoice.SalesTermRef = term
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
    customer = Ref()
    customer.value = draft.customer_id
    payment.CustomerRef = customer
    account = Ref()
    account.value = draft.deposit_account_id
    payment.DepositToAccountRef = account
    if draft.payment_method_id:
        method = Ref()
        method.value = draft.payment_method_id
        payment.PaymentMethodRef = method
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
