"""Preflight: can a financial event be sent now, and if so, what exactly is sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.connection import Connection, ConnectionState
from domain.financial_event import FinancialEvent
from domain.ids import doc_number as derive_doc_number
from domain.ids import request_id as derive_request_id
from domain.mappings import Mappings
from domain.ports import InvoiceDraft, InvoiceLine, PaymentDraft, ReasonCode
from domain.records import RecordKind, charges_from_data

RECONNECT_MESSAGE = (
    "Your refresh token has expired. Reconnect to keep invoicing through QuickBooks."
)
NOT_CONNECTED_MESSAGE = "QuickBooks is not connected. Connect QuickBooks to start invoicing."

INVOICE_KINDS = frozenset({RecordKind.FLIGHT_ENDED.value, RecordKind.INVOICE_REQUESTED.value})


@dataclass(frozen=True)
class Blocked:
    """Why an event cannot be sent now, with the exact keys missing."""

    reason_code: ReasonCode
    message: str
    missing: tuple[str, ...] = ()


def check_connection(connection: Connection | None, now: datetime) -> Blocked | None:
    """A usable, unexpired connection, or what is wrong with it."""
    if connection is None or connection.state in (
        ConnectionState.NEVER,
        ConnectionState.DISCONNECTED,
    ):
        return Blocked(ReasonCode.NOT_CONNECTED, NOT_CONNECTED_MESSAGE)
    if connection.state == ConnectionState.EXPIRED:
        detail = connection.last_error or ""
        message = RECONNECT_MESSAGE + (f" QuickBooks said: {detail}" if detail else "")
        return Blocked(ReasonCode.AUTH_EXPIRED, message)
    expiry = connection.effective_refresh_expiry()
    if expiry is not None and expiry <= now:
        return Blocked(ReasonCode.AUTH_EXPIRED, RECONNECT_MESSAGE)
    return None


def missing_keys(
    event: FinancialEvent, mappings: Mappings | None, *, auto_customers: bool = False
) -> tuple[list[str], list[str]]:
    """(missing, inactive) mapping keys this event needs, like 'charge:fuel_surcharge'.

    With auto_customers the worker maps a new student itself, so an unmapped student is not a
    missing key (Retry Failed does not wait for a person to map one).

    A charge code or payment type marked inactive here is one the school no longer uses (help
    article 004): it stays mapped and its historical records still sync, so it is not a
    blocker. Whether the QuickBooks object it points at is inactive is QuickBooks' to say.
    """
    missing: list[str] = []
    inactive: list[str] = []
    charges = mappings.charges if mappings else {}
    students = mappings.students if mappings else {}
    if event.student_id not in students and not auto_customers:
        missing.append(f"student:{event.student_id}")
    if event.kind in INVOICE_KINDS:
        for charge in charges_from_data(event.data["charges"]):
            key = f"charge:{charge.code}"
            if charge.code not in charges and key not in missing:
                missing.append(key)
        if mappings is None:
            missing.extend(["default:term", "default:memo", "default:income_account"])
        else:
            missing.extend(mappings.missing_defaults())
    else:
        payment_type = str(event.data["payment_type"])
        mapping = mappings.payment_types.get(payment_type) if mappings else None
        if mapping is None:
            missing.append(f"payment_type:{payment_type}")
    return missing, inactive


def check_mappings(
    event: FinancialEvent, mappings: Mappings | None, *, auto_customers: bool = False
) -> Blocked | None:
    """Every mapping the event needs exists and is active, or what is missing."""
    missing, inactive = missing_keys(event, mappings, auto_customers=auto_customers)
    if missing:
        return Blocked(
            ReasonCode.MISSING_MAPPING,
            "Missing mapping: " + ", ".join(missing),
            tuple(missing),
        )
    if inactive:
        return Blocked(
            ReasonCode.INACTIVE_MAPPING,
            "Mapped to an inactive QuickBooks object: " + ", ".join(inactive),
            tuple(inactive),
        )
    return None


def invoice_draft(event: FinancialEvent, mappings: Mappings) -> InvoiceDraft:
    """The invoice for a flight or invoice request (mappings must have passed preflight)."""
    charges = charges_from_data(event.data["charges"])
    lines = tuple(
        InvoiceLine(
            item_id=mappings.charges[c.code],
            description=c.description or _describe(event, c.code),
            quantity=c.quantity,
            unit_price=c.rate,
            amount=c.amount,
        )
        for c in charges
    )
    when = event.data.get("ended_at") or event.data.get("requested_at")
    assert isinstance(when, datetime)
    memo = event.data.get("memo") or mappings.memo
    return InvoiceDraft(
        event_id=event.id,
        request_id=derive_request_id(event.id, event.generation),
        doc_number=derive_doc_number(event.kind, event.reference),
        customer_id=mappings.students[event.student_id],
        txn_date=when.date(),
        lines=lines,
        total=sum((line.amount for line in lines), Decimal("0.00")),
        currency=event.currency,
        term_id=mappings.term_id,
        customer_memo=memo,
        private_note=f"flightledger {event.kind} {event.reference} ({event.id})",
    )


def payment_draft(
    event: FinancialEvent, mappings: Mappings, linked_invoice_id: str | None
) -> PaymentDraft:
    """The payment for a payment-received event, linked to its invoice when known."""
    mapping = mappings.payment_types[str(event.data["payment_type"])]
    received = event.data["received_at"]
    assert isinstance(received, datetime)
    return PaymentDraft(
        event_id=event.id,
        request_id=derive_request_id(event.id, event.generation),
        customer_id=mappings.students[event.student_id],
        txn_date=received.date(),
        amount=event.amount,
        deposit_account_id=mapping.deposit_account_id,
        currency=event.currency,
        payment_method_id=mapping.payment_method_id,
        linked_invoice_id=linked_invoice_id,
        private_note=f"flightledger payment {event.reference} ({event.id})",
    )


def _describe(event: FinancialEvent, code: str) -> str:
    label = code.replace("_", " ").capitalize()
    if event.kind == RecordKind.FLIGHT_ENDED.value:
        aircraft = event.data.get("aircraft") or {}
        tail = aircraft.get("tail", "")
        return f"{label} — flight {event.reference} {tail}".strip()
    return f"{label} — {event.reference}"
