"""Pure rules of the sync worker: backoff, attempt budgets, batching and lookup comparison."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from domain.financial_event import FinancialEvent, Status
from domain.ports import (
    FoundInvoice,
    InvoiceDraft,
    OutcomeKind,
    PaymentDraft,
    PushOutcome,
    ReasonCode,
)
from domain.qbo_lists import (
    ACCOUNT,
    CUSTOMER,
    ENTITY_WORDS,
    ITEM,
    PAYMENT_METHOD,
    TERM,
    QboLists,
)
from domain.records import RecordKind

T = TypeVar("T")

BATCH_MAX = 30  # QBO's documented maximum operations per batch request
WAITING = frozenset({Status.PENDING, Status.RETRYING})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by a number of automatic attempts."""

    max_attempts: int = 5
    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    jitter: float = 0.5  # the delay is scaled by a factor in [1 - jitter, 1]

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the n-th consecutive failure (n >= 1)."""
        exponent = max(0, failures - 1)
        raw = min(self.cap_seconds, self.base_seconds * (2.0**exponent))
        factor = 1.0 - self.jitter * (rng or random).random()
        return raw * factor

    def next_attempt_at(
        self, updated_at: datetime, failures: int, rng: random.Random | None = None
    ) -> datetime:
        """When an event that failed at updated_at may be tried again."""
        return updated_at + timedelta(seconds=self.delay(failures, rng))

    def exhausted(self, failures: int) -> bool:
        """True once the automatic attempts are used up."""
        return failures >= self.max_attempts


def chunks(items: Sequence[T], size: int = BATCH_MAX) -> list[list[T]]:
    """Split items into consecutive chunks of at most size."""
    if size < 1:
        raise ValueError("size: must be at least 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def is_invoice(event: FinancialEvent) -> bool:
    """Flights and invoice requests become invoices; payments become payments."""
    return event.kind != RecordKind.PAYMENT_RECEIVED.value


def may_have_landed(event: FinancialEvent) -> bool:
    """An earlier push of this event may have reached QBO: never send it blind in a batch.

    Uncertain events obviously; pending events with earlier attempts were requeued by an
    operator after an outcome that may have been uncertain (or auth_expired while syncing).
    """
    if event.status == Status.UNCERTAIN:
        return True
    return event.status == Status.PENDING and event.attempts > 0


def same_invoice(found: FoundInvoice, draft: InvoiceDraft) -> bool:
    """The invoice found by DocNumber is ours: same customer and same total."""
    return found.customer_id == draft.customer_id and found.total == draft.total


def found_by_doc_number(
    draft: InvoiceDraft, found: FoundInvoice, refusal: PushOutcome | None = None
) -> PushOutcome:
    """What an invoice found under our DocNumber means: ours (same customer and total) ->
    synced; else duplicate_doc_number naming both contents (after QuickBooks' own words when
    the lookup answered its duplicate-DocNumber refusal)."""
    if same_invoice(found, draft):
        return PushOutcome(
            event_id=draft.event_id,
            kind=OutcomeKind.SYNCED,
            qbo_id=found.qbo_id,
            doc_number=found.doc_number,
        )
    message = (
        f"An invoice with DocNumber {draft.doc_number} but different contents already "
        f"exists in QuickBooks (id {found.qbo_id}, customer {found.customer_id}, total "
        f"{found.total}; ours: customer {draft.customer_id}, total {draft.total})"
    )
    if refusal is None:
        return PushOutcome(
            event_id=draft.event_id,
            kind=OutcomeKind.ACTION_REQUIRED,
            reason_code=ReasonCode.DUPLICATE_DOC_NUMBER,
            message=message,
        )
    return replace(refusal, message=f"{message}. QuickBooks said: {refusal.message}")


def applies_to_reference(event: FinancialEvent) -> str | None:
    """The flight/request id a payment applies to, if any."""
    value = event.data.get("applies_to")
    return str(value) if value else None


_QBO_OBJECT_ID = re.compile(r"\b(Item|Customer|Account|Term|PaymentMethod)\s+(\d+)\b")
_LINE_INDEX = re.compile(r"Line\[(\d+)\]")


@dataclass(frozen=True)
class MappedRef:
    """One of our mappings behind a QuickBooks reference of a draft (pure)."""

    key: str  # "charge:fuel_surcharge", "student:S-7", "payment_type:card", "default:term"
    words: str  # "Charge code fuel_surcharge"
    entity: str  # domain.qbo_lists entity: Item, Customer, Account, Term, PaymentMethod
    qbo_id: str

    def describe(self, lists: QboLists | None = None) -> str:
        """'QuickBooks item 5 (Old rental)' when the lists know it, else 'QuickBooks item 5'."""
        found = lists.get(self.entity, self.qbo_id) if lists is not None else None
        if found is not None:
            return found.describe()
        return f"QuickBooks {ENTITY_WORDS.get(self.entity, self.entity)} {self.qbo_id}"


def element_references(
    element: str, event: FinancialEvent, draft: InvoiceDraft | PaymentDraft | None
) -> list[MappedRef]:
    """The mappings QBO's `element` (``Line.SalesItemLineDetail.ItemRef``, ``CustomerRef``,
    ``SalesTermRef``, ``DepositToAccountRef``, ``PaymentMethodRef``; "" = any) can stand for in
    this draft: a line's item gives its charge code(s). Unknown elements give none."""
    if draft is None:
        return []
    refs: list[MappedRef] = []

    def wants(name: str) -> bool:
        return not element or name in element

    if isinstance(draft, InvoiceDraft) and wants("ItemRef"):
        codes = [str(c.get("code", "")) for c in event.data.get("charges", []) or []]
        pairs = list(zip(codes, draft.lines, strict=False))
        index = _LINE_INDEX.search(element)
        if index is not None and int(index.group(1)) < len(pairs):
            pairs = [pairs[int(index.group(1))]]
        for code, line in pairs:
            refs.append(MappedRef(f"charge:{code}", f"Charge code {code}", ITEM, line.item_id))
    if wants("CustomerRef"):
        student = f"Student {event.student_id}"
        refs.append(MappedRef(f"student:{event.student_id}", student, CUSTOMER, draft.customer_id))
    if isinstance(draft, InvoiceDraft) and wants("SalesTermRef") and draft.term_id:
        refs.append(MappedRef("default:term", "The default term", TERM, draft.term_id))
    if isinstance(draft, PaymentDraft):
        kind = str(event.data.get("payment_type", ""))
        words = f"Payment type {kind}"
        if wants("DepositToAccountRef"):
            refs.append(MappedRef(f"payment_type:{kind}", words, ACCOUNT, draft.deposit_account_id))
        if wants("PaymentMethodRef") and draft.payment_method_id:
            refs.append(
                MappedRef(f"payment_type:{kind}", words, PAYMENT_METHOD, draft.payment_method_id)
            )
    unique: dict[tuple[str, str, str], MappedRef] = {}
    for ref in refs:
        unique.setdefault((ref.key, ref.entity, ref.qbo_id), ref)
    return list(unique.values())


def blamed_mappings(
    event: FinancialEvent,
    draft: InvoiceDraft | PaymentDraft | None,
    outcome: PushOutcome,
    inactive: frozenset[str] | None = None,
    lists: QboLists | None = None,
) -> tuple[list[str], str]:
    """Which of our mapping keys an inactive_mapping / invalid_reference fault points at, and a
    sentence naming them.

    QBO names only the element (``Line.SalesItemLineDetail.ItemRef``) and sometimes an id
    ("Item 99"); `inactive` is what a lookup found ("Item:3"); `lists` (the cached QuickBooks
    lists, no call) tells which id QuickBooks does not know. The operator reads the charge code,
    student, payment type or default in plain words, never the element.
    """
    refs = element_references(" ".join(outcome.missing), event, draft)
    if not refs:
        return [], ""
    gone = outcome.reason_code == ReasonCode.INVALID_REFERENCE
    named = {(kind, number) for kind, number in _QBO_OBJECT_ID.findall(outcome.message)}
    if not named and inactive:
        named = {(ref.partition(":")[0], ref.partition(":")[2]) for ref in inactive}
    if not named and lists is not None:
        known = {r.entity for r in refs if lists.of(r.entity)}  # a list that was cached
        named = {
            (r.entity, r.qbo_id)
            for r in refs
            if r.entity in known
            and (lists.get(r.entity, r.qbo_id) is None if gone else _inactive(lists, r))
        }
    blamed = [r for r in refs if (r.entity, r.qbo_id) in named]
    sure = bool(blamed) or len(refs) == 1  # one candidate: it is the one
    blamed = blamed or refs
    state = "which does not exist in QuickBooks" if gone else "which is inactive"
    verb = {"default:term": "is"}
    parts = [f"{r.words} {verb.get(r.key, 'is mapped to')} {r.describe(lists)}" for r in blamed]
    keys = list(dict.fromkeys(r.key for r in blamed))
    if sure:
        return keys, " " + " ".join(f"{part}, {state}." for part in parts)
    lead = " One of these QuickBooks does not know: " if gone else " One of these is inactive: "
    return keys, lead + "; ".join(parts) + "."


def _inactive(lists: QboLists, ref: MappedRef) -> bool:
    found = lists.get(ref.entity, ref.qbo_id)
    return found is not None and not found.active


def is_outage(outcome: PushOutcome) -> bool:
    """A network-level failure or a 5xx: the realm (or QuickBooks) is down, not this event."""
    if outcome.kind not in (OutcomeKind.TRANSIENT, OutcomeKind.UNCERTAIN) or outcome.pause_realm:
        return False
    return outcome.http_status is None or outcome.http_status >= 500


@dataclass
class CircuitBreaker:
    """One realm's breaker: after `threshold` outage calls in a row it opens for a cooldown that
    doubles on every re-open (up to `max_seconds`); then one probe call is let through
    (half-open): an answer closes it, another outage re-opens it at once."""

    threshold: int = 5
    base_seconds: float = 30.0
    max_seconds: float = 600.0
    failures: int = 0
    opens: int = 0
    open_until: datetime | None = None
    half_open: bool = False

    def allows(self, now: datetime) -> bool:
        """May a call go out now (closed, or the cooldown passed: the half-open probe)?"""
        if self.open_until is None:
            return True
        if now < self.open_until:
            return False
        self.open_until, self.half_open = None, True
        return True

    def succeeded(self) -> None:
        """QuickBooks answered (even with a refusal): the realm is up."""
        self.failures, self.opens, self.half_open, self.open_until = 0, 0, False, None

    def failed(self, now: datetime) -> float | None:
        """An outage call; the cooldown in seconds when this opens the breaker, else None."""
        self.failures += 1
        if not self.half_open and self.failures < self.threshold:
            return None
        seconds = float(min(self.max_seconds, self.base_seconds * 2.0**self.opens))
        self.opens += 1
        self.failures, self.half_open = 0, False
        self.open_until = now + timedelta(seconds=seconds)
        return seconds
