"""Ports: what the domain needs from the outside world, as Protocols over frozen dataclasses."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from domain.qbo_lists import QboLists, QboObject


class OutcomeKind(StrEnum):
    """What one push to the accounting system came to."""

    SYNCED = "synced"
    TRANSIENT = "transient"  # not sent or surely not applied: safe to retry later
    UNCERTAIN = "uncertain"  # may have reached QBO: resolve by replay/lookup, never blind re-create
    ACTION_REQUIRED = "action_required"  # a person must act; reason_code says what


class ReasonCode(StrEnum):
    """Why a financial event needs a person (DESIGN.md)."""

    AUTH_EXPIRED = "auth_expired"
    AUTH_FAILED = "auth_failed"
    NOT_CONNECTED = "not_connected"
    MISSING_MAPPING = "missing_mapping"
    INACTIVE_MAPPING = "inactive_mapping"
    INVALID_REFERENCE = "invalid_reference"
    VALIDATION = "validation"
    DUPLICATE_DOC_NUMBER = "duplicate_doc_number"
    COMPANY_SWITCHED = "company_switched"  # may already be in the company connected before
    CHANGED_IN_QUICKBOOKS = "changed_in_quickbooks"
    AMBIGUOUS_CUSTOMER = "ambiguous_customer"


@dataclass(frozen=True)
class InvoiceLine:
    """One sales line of an invoice: an Item, quantity and unit price."""

    item_id: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class InvoiceDraft:
    """An invoice ready to send; request_id and doc_number are derived from the event."""

    event_id: UUID
    request_id: str
    doc_number: str
    customer_id: str
    txn_date: date
    lines: tuple[InvoiceLine, ...]
    total: Decimal
    currency: str = "USD"
    term_id: str | None = None
    customer_memo: str | None = None
    private_note: str | None = None


@dataclass(frozen=True)
class PaymentDraft:
    """A received payment ready to send, linked to an invoice when known."""

    event_id: UUID
    request_id: str
    customer_id: str
    txn_date: date
    amount: Decimal
    deposit_account_id: str
    currency: str = "USD"
    payment_method_id: str | None = None
    linked_invoice_id: str | None = None
    private_note: str | None = None


@dataclass(frozen=True)
class PushOutcome:
    """The final, classified result of pushing one draft (or looking one up).

    The gateway interprets QuickBooks' answer once: a duplicate DocNumber comes back already
    resolved (synced when the invoice found is ours, else duplicate_doc_number), a throttle as
    pause_realm, a stale SyncToken as stale_object, an update or void of an invoice deleted in
    QuickBooks as object_gone; the push pass acts on the outcome and never reads a QuickBooks
    code (`code` is shown to people with QuickBooks' message, never compared).
    """

    event_id: UUID
    kind: OutcomeKind
    qbo_id: str | None = None
    doc_number: str | None = None
    reason_code: ReasonCode | None = None
    code: str | None = None  # QBO's error code, shown beside its message
    message: str = ""  # QBO's own message (+ detail), never a bare status code
    http_status: int | None = None
    retry_after: float | None = None  # seconds to pause the realm (429)
    missing: tuple[str, ...] = ()  # keys QBO named (element), if any
    pause_realm: bool = False  # throttled: pause the whole realm, spend no attempt
    stale_object: bool = False  # saved in QuickBooks since our read: re-read, send once more
    object_gone: bool = False  # the invoice an update or void named is deleted in QuickBooks


@dataclass(frozen=True)
class FoundInvoice:
    """An invoice found in QBO by DocNumber: enough to compare contents."""

    qbo_id: str
    doc_number: str
    customer_id: str
    total: Decimal


@dataclass(frozen=True)
class CompanyInfo:
    """Who we are connected to."""

    company_name: str
    country: str


@dataclass(frozen=True)
class LookupResult:
    """A DocNumber lookup: found invoice, nothing, or a failure outcome."""

    found: FoundInvoice | None = None
    failure: PushOutcome | None = None


@dataclass(frozen=True)
class TokenExpiries:
    """Expiry times of a token set; token values never leave the vault."""

    access_expires_at: datetime
    refresh_expires_at: datetime | None
    hard_expires_at: datetime | None = None


@dataclass(frozen=True)
class TokenSet:
    """A school's OAuth tokens and their expiries."""

    realm: str
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime | None
    hard_expires_at: datetime | None = None

    def __repr__(self) -> str:
        """Never show token values."""
        return (
            f"TokenSet(realm={self.realm!r}, access_expires_at={self.access_expires_at}, "
            f"refresh_expires_at={self.refresh_expires_at}, hard_expires_at={self.hard_expires_at})"
        )

    __str__ = __repr__

    def to_json(self) -> str:
        """Serialise (for encryption only)."""
        return json.dumps(
            {
                "realm": self.realm,
                "access_token": self.access_token,
                "access_expires_at": self.access_expires_at.isoformat(),
                "refresh_token": self.refresh_token,
                "refresh_expires_at": _iso(self.refresh_expires_at),
                "hard_expires_at": _iso(self.hard_expires_at),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        """Deserialise."""
        data = json.loads(text)
        return cls(
            realm=data["realm"],
            access_token=data["access_token"],
            access_expires_at=datetime.fromisoformat(data["access_expires_at"]),
            refresh_token=data["refresh_token"],
            refresh_expires_at=_from_iso(data.get("refresh_expires_at")),
            hard_expires_at=_from_iso(data.get("hard_expires_at")),
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class ConnectionCheck:
    """Result of a live connection test."""

    ok: bool
    company: CompanyInfo | None = None
    message: str = ""
    reason_code: ReasonCode | None = None


# --- what the connection use cases (services/connection.py) need ------------------------------


class AuthorizationFailed(Exception):
    """An OAuth call (code exchange, refresh, revoke) failed; the message is for the operator
    and never carries a token (adapters.quickbooks.oauth.QboAuthError is one)."""


@dataclass(frozen=True)
class OAuthCallback:
    """What the authorization server's redirect carried (empty strings where it carried none)."""

    state: str = ""
    code: str = ""
    realm: str = ""
    error: str = ""
    error_description: str = ""


class OAuthPort(Protocol):
    """The accounting system's OAuth endpoints for this app (adapters.quickbooks.oauth)."""

    def authorization_url(self, state: str) -> str:
        """The URL to send the operator to, already checked against the trusted origins."""
        ...

    def exchange(self, code: str, realm: str, now: datetime) -> TokenSet:
        """Trade an authorization code for tokens (AuthorizationFailed when refused)."""
        ...

    def revoke(self, token: str) -> None:
        """End the connection at the provider (AuthorizationFailed when refused)."""
        ...


class ConnectionVault(Protocol):
    """Where a school's tokens and pending OAuth states are kept (adapters.vault.TokenVault)."""

    def put_state(self, school: str, state: str, *, ttl: timedelta, now: datetime) -> None:
        """Remember an OAuth state for one use until now + ttl."""
        ...

    def consume_state(self, school: str, state: str, *, now: datetime) -> bool:
        """True once for a stored, unexpired state."""
        ...

    def get_tokens(self, school: str) -> TokenSet | None:
        """The school's token set, or None."""
        ...

    def put_tokens(self, school: str, tokens: TokenSet) -> None:
        """Store (or atomically replace) a school's token set."""
        ...

    def delete_tokens(self, school: str) -> bool:
        """Forget the school's tokens."""
        ...

    def refresh_lock(self, school: str) -> AbstractContextManager[None]:
        """Held while a token set is refreshed or replaced (across processes)."""
        ...


class CompanyProbe(Protocol):
    """The live reads a connection test makes (the school's AccountingGateway)."""

    def test_connection(self) -> ConnectionCheck:
        """Read CompanyInfo live."""
        ...

    def custom_txn_numbers(self) -> bool | None:
        """Whether the company keeps the DocNumbers we send (None: cannot tell)."""
        ...


class CompanyDirectory(Protocol):
    """Reading who a token set or a school is connected to (adapters/quickbooks, wired in
    workers/qbo.py)."""

    def company_with(self, school: str, tokens: TokenSet) -> CompanyInfo | PushOutcome:
        """CompanyInfo of tokens.realm read with tokens not yet stored, or the failure."""
        ...

    def probe(self, school: str) -> CompanyProbe:
        """The school's gateway for a live test, with its stored tokens."""
        ...


class StoreUnavailable(RuntimeError):
    """A database a use case needs could not be reached or failed; nothing was changed.

    Adapters raise it (translated from their driver's errors); a use case lets it pass
    instead of recording an outcome, so the work is tried again, never given up on.
    """


@runtime_checkable
class Closeable(Protocol):
    """Something that holds a connection or session until closed (a QuickBooks gateway)."""

    def close(self) -> None:
        """Release what it holds; calling it twice is harmless."""
        ...


class AccountingGateway(Protocol):
    """Pushes drafts to the accounting system of one school (one QBO realm)."""

    def push_invoice(self, draft: InvoiceDraft) -> PushOutcome:
        """Create one invoice with its request id (replay-safe)."""
        ...

    def push_invoices(self, drafts: Sequence[InvoiceDraft]) -> list[PushOutcome]:
        """Create many invoices through the batch endpoint; one outcome per draft, same order."""
        ...

    def push_payment(self, draft: PaymentDraft) -> PushOutcome:
        """Create one payment with its request id (replay-safe)."""
        ...

    def find_invoice(self, doc_number: str) -> LookupResult:
        """Look an invoice up by DocNumber (a metered read: only when uncertain)."""
        ...

    def inactive_references(
        self, item_ids: Sequence[str], customer_ids: Sequence[str]
    ) -> frozenset[str] | None:
        """Which of these Items/Customers are inactive ("Item:3"); None when it cannot tell."""
        ...

    def test_connection(self) -> ConnectionCheck:
        """Read CompanyInfo live."""
        ...


@dataclass(frozen=True)
class QboInvoice:
    """An invoice as QuickBooks holds it now (read before a correction)."""

    qbo_id: str
    doc_number: str
    sync_token: str
    customer_id: str
    total: Decimal
    balance: Decimal
    voided: bool = False


@dataclass(frozen=True)
class InvoiceRead:
    """Reading an invoice by id: found, deleted (neither field set), or a failure."""

    found: QboInvoice | None = None
    failure: PushOutcome | None = None


@dataclass(frozen=True)
class InvoiceChange:
    """A sparse update of a sent, unpaid invoice to a new version."""

    event_id: UUID
    request_id: str
    qbo_id: str
    sync_token: str
    customer_id: str
    lines: tuple[InvoiceLine, ...]
    total: Decimal
    private_note: str | None = None


@dataclass(frozen=True)
class CreditDraft:
    """A CreditMemo (credit_memo) or RefundReceipt (refund) ready to send."""

    event_id: UUID
    request_id: str
    doc_number: str
    customer_id: str
    txn_date: date
    lines: tuple[InvoiceLine, ...]
    total: Decimal
    currency: str = "USD"
    private_note: str | None = None
    deposit_account_id: str | None = None  # refunds: the account the money leaves from
    payment_method_id: str | None = None


@runtime_checkable
class CorrectionGateway(Protocol):
    """What corrections need from the accounting system, beyond creates."""

    def read_invoice(self, event_id: UUID, qbo_id: str) -> InvoiceRead:
        """Read one invoice by id (a metered read: only before a correction)."""
        ...

    def update_invoice(self, change: InvoiceChange) -> PushOutcome:
        """Sparse update with the invoice's SyncToken and a request id."""
        ...

    def void_invoice(
        self, event_id: UUID, qbo_id: str, sync_token: str, request_id: str
    ) -> PushOutcome:
        """Void one invoice (its SyncToken, a request id)."""
        ...

    def push_credit_memo(self, draft: CreditDraft) -> PushOutcome:
        """Create one CreditMemo with its request id."""
        ...

    def push_refund_receipt(self, draft: CreditDraft) -> PushOutcome:
        """Create one RefundReceipt with its request id."""
        ...

    def find_document(self, entity: str, doc_number: str) -> LookupResult:
        """Look up an Invoice, CreditMemo or RefundReceipt by DocNumber (after uncertainty)."""
        ...


class Clock(Protocol):
    """The time, so tests can walk it."""

    def now(self) -> datetime:
        """Current aware UTC time."""
        ...


@dataclass
class FixedClock:
    """A clock that stands still until moved (tests, demos, as-of reads)."""

    at: datetime
    history: list[datetime] = field(default_factory=list)

    def now(self) -> datetime:
        """The fixed time."""
        return self.at

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        from datetime import timedelta

        self.history.append(self.at)
        self.at = self.at + timedelta(seconds=seconds)


@runtime_checkable
class BulkLookups(Protocol):
    """What the log's own recorders (SQLite, PostgreSQL) answer in one query each; a recorder
    without them (the library's in-memory one) is asked aggregate by aggregate."""

    def existing_originator_ids(self, originator_ids: Iterable[UUID]) -> set[UUID]:
        """Which of these aggregates have events in the log."""
        ...

    def log_positions(self, originator_id: UUID) -> dict[int, int]:
        """An aggregate's versions -> their positions in the whole log."""
        ...


@runtime_checkable
class BulkEventReads(Protocol):
    """A recorder that reads the new events of many aggregates in one query (PostgreSQL)."""

    def select_events_after(self, floors: Sequence[tuple[UUID, int]]) -> list[StoredEvent]:
        """Events of each (aggregate id, version) after that version, in version order."""
        ...


# --- what the push pass (services/push_pass.py and its steps) needs ---------------------------


class PushMetrics(Protocol):
    """The worker's push counters (adapters.metrics; wired in workers/runtime.py)."""

    def invoice_synced(self, recorded_at: datetime, now: datetime) -> None:
        """Observe the flight-to-invoice latency of one synced invoice."""
        ...


class NoMetrics:
    """PushMetrics that count nothing (an engine nobody scrapes: tests, benches)."""

    def invoice_synced(self, recorded_at: datetime, now: datetime) -> None:
        """Count nothing."""


class RealmLocks(Protocol):
    """Exclusive, crash-released ownership of schools (adapters.realm_locks: PostgreSQL
    advisory locks, a SQLite file lock); the worker loop takes a school's before its pass."""

    @property
    def parallel_passes(self) -> int:
        """Passes of different schools one worker may run at once under these locks."""
        ...

    def try_acquire(self, school: str) -> bool:
        """Own the school now, or False when another worker does."""
        ...

    def hold(self, school: str) -> None:
        """Keep the school after its pass (no other worker takes it) until released."""
        ...

    @property
    def kept(self) -> set[str]:
        """The schools kept between passes (``hold``)."""
        ...

    def release(self, school: str) -> None:
        """Let other workers take the school."""
        ...

    def close(self) -> None:
        """Release everything."""
        ...


class QboListCache(Protocol):
    """The stored copy of each school's QuickBooks lists per realm (adapters.qbo_lists
    QboListStore): what auto-customers reads and adds a created customer to."""

    def get(self, school: str, realm: str) -> QboLists | None:
        """The cached lists of the school's realm; None when never read."""
        ...

    def add(self, school: str, realm: str, obj: QboObject) -> bool:
        """Add (or replace) one object in the cached lists; False when there are none yet."""
        ...
