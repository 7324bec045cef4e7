"""Input records (CLI.md "Input records"): parse and validate into frozen dataclasses."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

MAX_ID_LENGTH = 64
MAX_NAME_LENGTH = 200
MAX_MEMO_LENGTH = 1000
MAX_AMOUNT = Decimal("99999999.99")  # any single number (hobbs readings included)
# Bounds a flight school's real records never reach and QuickBooks accepts (docs/cli.md):
MAX_QUANTITY = Decimal("10000.00")  # hours or units on one charge
MAX_RATE = Decimal("100000.00")  # price of one hour or unit
MAX_TOTAL = Decimal("1000000.00")  # one charge, one invoice, one payment
MAX_CHARGES = 250
MAX_LINE_BYTES = 4_000_000  # one JSON line (250 charges with 4,000-character descriptions fit)
MAX_EMAIL_LENGTH = 254  # RFC 5321's path limit; QuickBooks' PrimaryEmailAddr holds 100
MAX_EMAIL_LOCAL_LENGTH = 64


class RecordKind(StrEnum):
    """The three kinds of financial fact."""

    FLIGHT_ENDED = "flight-ended"
    INVOICE_REQUESTED = "invoice-requested"
    PAYMENT_RECEIVED = "payment-received"
    FLIGHT_AMENDED = "flight-amended"
    FLIGHT_CANCELLED = "flight-cancelled"
    PAYMENT_REFUNDED = "payment-refunded"


CREATION_KINDS = (
    RecordKind.FLIGHT_ENDED,
    RecordKind.INVOICE_REQUESTED,
    RecordKind.PAYMENT_RECEIVED,
)
CORRECTION_KINDS = (
    RecordKind.FLIGHT_AMENDED,
    RecordKind.FLIGHT_CANCELLED,
    RecordKind.PAYMENT_REFUNDED,
)


class RecordError(ValueError):
    """A record was refused: which field and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownRecord(RecordError):
    """A correction names a flight or payment that this school has not recorded."""


@dataclass(frozen=True)
class Party:
    """A student or instructor: id, display name and (students, optionally) an email."""

    id: str
    name: str
    email: str | None = None


@dataclass(frozen=True)
class Aircraft:
    """The aircraft flown."""

    tail: str
    type: str


@dataclass(frozen=True)
class Hobbs:
    """Hobbs meter readings."""

    start: Decimal
    end: Decimal


@dataclass(frozen=True)
class Charge:
    """One billable line: charge code, quantity and rate."""

    code: str
    quantity: Decimal
    rate: Decimal
    description: str | None = None

    @property
    def amount(self) -> Decimal:
        """Quantity x rate, rounded to cents."""
        return (self.quantity * self.rate).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class FlightEndedRecord:
    """A flight ended: the source of an invoice."""

    flight_id: str
    ended_at: datetime
    student: Party
    instructor: Party
    aircraft: Aircraft
    hobbs: Hobbs
    charges: tuple[Charge, ...]
    currency: str

    kind = RecordKind.FLIGHT_ENDED

    @property
    def source_id(self) -> str:
        """The id this record is deduplicated on."""
        return self.flight_id

    @property
    def total(self) -> Decimal:
        """Sum of the charge amounts."""
        return sum((c.amount for c in self.charges), Decimal("0.00"))


@dataclass(frozen=True)
class InvoiceRequestedRecord:
    """An invoice requested by the office (not tied to a flight)."""

    request_id: str
    requested_at: datetime
    student: Party
    charges: tuple[Charge, ...]
    currency: str
    memo: str | None = None

    kind = RecordKind.INVOICE_REQUESTED

    @property
    def source_id(self) -> str:
        """The id this record is deduplicated on."""
        return self.request_id

    @property
    def total(self) -> Decimal:
        """Sum of the charge amounts."""
        return sum((c.amount for c in self.charges), Decimal("0.00"))


@dataclass(frozen=True)
class PaymentReceivedRecord:
    """A payment received from a student."""

    payment_id: str
    received_at: datetime
    student: Party
    amount: Decimal
    payment_type: str
    currency: str
    applies_to: str | None = None

    kind = RecordKind.PAYMENT_RECEIVED

    @property
    def source_id(self) -> str:
        """The id this record is deduplicated on."""
        return self.payment_id

    @property
    def total(self) -> Decimal:
        """The amount received."""
        return self.amount


Record = FlightEndedRecord | InvoiceRequestedRecord | PaymentReceivedRecord


@dataclass(frozen=True)
class FlightAmendedRecord:
    """A recorded flight corrected: the whole flight-ended shape again, from now on."""

    flight: FlightEndedRecord
    amended_at: datetime
    reason: str | None = None

    kind = RecordKind.FLIGHT_AMENDED

    @property
    def source_id(self) -> str:
        """The flight this amends."""
        return self.flight.flight_id


@dataclass(frozen=True)
class FlightCancelledRecord:
    """A recorded flight cancelled after the fact."""

    flight_id: str
    cancelled_at: datetime
    reason: str

    kind = RecordKind.FLIGHT_CANCELLED

    @property
    def source_id(self) -> str:
        """The flight this cancels."""
        return self.flight_id


@dataclass(frozen=True)
class PaymentRefundedRecord:
    """Money of a recorded payment given back to the student."""

    refund_id: str
    payment_id: str
    refunded_at: datetime
    amount: Decimal
    currency: str
    reason: str | None = None

    kind = RecordKind.PAYMENT_REFUNDED

    @property
    def source_id(self) -> str:
        """The id this record is deduplicated on."""
        return self.refund_id


Correction = FlightAmendedRecord | FlightCancelledRecord | PaymentRefundedRecord


# --- field parsers -----------------------------------------------------------------------------

# Speed-ups that change no rule: strings already accepted (as an id, as a name, as a decimal) are
# accepted again without re-checking; a failing value is never cached, so every refusal is
# re-derived with its exact message. Bounded: a full cache is emptied and refilled.
_CACHE_LIMIT = 4096
_GOOD_IDS: set[str] = set()
_GOOD_NAMES: set[str] = set()
_GOOD_DECIMALS: dict[str, Decimal] = {}
_CENT = Decimal("0.01")


def _remember(cache: set[str], value: str) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache.add(value)


class _Shape:
    """The fields a JSON object may and must have, precomputed for the fast check."""

    __slots__ = ("allowed", "optional", "required", "required_sorted")

    def __init__(self, required: set[str], optional: set[str]) -> None:
        self.required = frozenset(required)
        self.optional = frozenset(optional)
        self.allowed = self.required | self.optional
        self.required_sorted = tuple(sorted(required))


def _obj(value: Any, field: str, shape: _Shape) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(field or "record", "must be a JSON object")
    if value.keys() <= shape.allowed:  # fast path: no unknown field
        for key in shape.required_sorted:
            if value.get(key) is None:
                break
        else:
            return value
    unknown = sorted(set(value) - shape.allowed)
    if unknown:
        name = f"{field}.{unknown[0]}" if field else unknown[0]
        raise RecordError(name, "unknown field")
    for key in shape.required_sorted:
        if key not in value or value[key] is None:
            raise RecordError(f"{field}.{key}" if field else key, "is required")
    return value


def _unsafe_character(value: str) -> str | None:
    """The first control, format (bidi marks included), separator or unassigned character."""
    for char in value:
        if char != " " and unicodedata.category(char)[0] in "CZ":
            return f"U+{ord(char):04X}"
    return None


def normalise_id(value: str) -> str:
    """An id as it becomes an identity: NFKC, so fullwidth 'F-1' and ASCII 'F-1' are one id."""
    return value if value.isascii() else unicodedata.normalize("NFKC", value)


def _id(value: Any, field: str) -> str:
    if type(value) is str and value in _GOOD_IDS:
        return value
    if not isinstance(value, str):
        raise RecordError(field, "must be a string")
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise RecordError(field, f"must be 1-{MAX_ID_LENGTH} characters")
    bad = _unsafe_character(value)
    if bad is not None:
        raise RecordError(field, f"must be printable: no control, format or bidi char ({bad})")
    normal = normalise_id(value)
    if not 1 <= len(normal) <= MAX_ID_LENGTH:
        raise RecordError(field, f"must be 1-{MAX_ID_LENGTH} characters (after NFKC)")
    if normal.strip() != normal or _unsafe_character(normal) is not None:
        raise RecordError(field, "must be printable characters without leading/trailing spaces")
    if type(value) is str and normal == value:
        _remember(_GOOD_IDS, value)
    return normal


def _text(value: Any, field: str, max_length: int = MAX_NAME_LENGTH) -> str:
    if max_length == MAX_NAME_LENGTH and type(value) is str and value in _GOOD_NAMES:
        return value
    if not isinstance(value, str):
        raise RecordError(field, "must be a string")
    if not value.strip():
        raise RecordError(field, "must not be empty")
    if len(value) > max_length:
        raise RecordError(field, f"must be at most {max_length} characters")
    bad = _unsafe_character(value)
    if bad is not None:
        raise RecordError(field, f"must be printable: no control, format or bidi char ({bad})")
    if max_length == MAX_NAME_LENGTH and type(value) is str:
        _remember(_GOOD_NAMES, value)
    return value


def _decimal(
    value: Any, field: str, *, what: str = "amount", limit: Decimal = MAX_AMOUNT
) -> Decimal:
    if type(value) is str:
        known = _GOOD_DECIMALS.get(value)
        if known is not None and known <= limit:
            return known
        number = _decimal_checked(value, field, what, limit)
        if len(_GOOD_DECIMALS) >= _CACHE_LIMIT:
            _GOOD_DECIMALS.clear()
        _GOOD_DECIMALS[value] = number
        return number
    return _decimal_checked(value, field, what, limit)


# A decimal string: ASCII digits, an optional fraction; surrounding spaces are trimmed and a
# minus sign is read (only to refuse it, or as zero in '-0'). No exponent, no '_', no other digits.
_DECIMAL_STRING = re.compile(r"[ \t]*(-?[0-9]+(?:\.[0-9]+)?)[ \t]*", re.ASCII)


def _decimal_checked(value: Any, field: str, what: str, limit: Decimal) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise RecordError(field, f"{what} must be a decimal string or number")
    if isinstance(value, str):
        match = _DECIMAL_STRING.fullmatch(value)
        if match is None:
            if value.strip().lstrip("+-").lower() in ("nan", "snan", "inf", "infinity"):
                raise RecordError(field, f"{what} must be finite")
            raise RecordError(field, f"{what} is not a decimal number: {value[:40]!r}")
        number = Decimal(match.group(1))
    else:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise RecordError(field, f"{what} must be finite")
    if number.adjusted() > 20:
        raise RecordError(field, f"{what} must be at most {limit}")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise RecordError(field, f"{what} has more than 2 decimal places")
    if number < 0:
        raise RecordError(field, f"{what} must be >= 0")
    if number > limit:
        raise RecordError(field, f"{what} must be at most {limit}")
    return abs(number).quantize(_CENT)  # abs: '-0' is 0.00, never '-0.00'


def _timestamp(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise RecordError(field, "must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RecordError(field, f"is not an ISO 8601 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        raise RecordError(field, "must include a time zone (e.g. 'Z')")
    return parsed


def _currency(value: Any, field: str) -> str:
    if not (isinstance(value, str) and len(value) == 3 and value.isascii() and value.isupper()):
        raise RecordError(field, "must be a 3-letter ISO currency code like 'USD'")
    return value


def _email(value: Any, field: str) -> str:
    """A sane email shape: local@domain.tld, printable ASCII, no spaces, length-bounded."""
    if not isinstance(value, str):
        raise RecordError(field, "must be a string")
    if not 3 <= len(value) <= MAX_EMAIL_LENGTH:
        raise RecordError(field, f"must be 3-{MAX_EMAIL_LENGTH} characters")
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise RecordError(field, "must be printable ASCII without spaces")
    local, at, domain = value.rpartition("@")
    if not at or not local or "@" in local or not domain:
        raise RecordError(field, "must look like name@example.com (one '@')")
    if len(local) > MAX_EMAIL_LOCAL_LENGTH:
        raise RecordError(field, f"the part before '@' must be at most {MAX_EMAIL_LOCAL_LENGTH}")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        raise RecordError(field, "the part after '@' must be a domain like example.com")
    if any(c in value for c in '"(),:;<>[\\]'):
        raise RecordError(field, "must not contain quotes, brackets, commas or semicolons")
    return value


def _party(value: Any, field: str, shape: _Shape | None = None) -> Party:
    obj = _obj(value, field, shape or _PARTY)
    email = obj.get("email")
    return Party(
        id=_id(obj["id"], f"{field}.id"),
        name=_text(obj["name"], f"{field}.name"),
        email=None if email is None else _email(email, f"{field}.email"),
    )


def _student(value: Any) -> Party:
    return _party(value, "student", _STUDENT)


def _charges(value: Any, field: str) -> tuple[Charge, ...]:
    if not isinstance(value, list):
        raise RecordError(field, "must be a list of charges")
    if not value:
        raise RecordError(field, "must contain at least one charge")
    if len(value) > MAX_CHARGES:
        raise RecordError(field, f"must contain at most {MAX_CHARGES} charges")
    charges = []
    for i, raw in enumerate(value):
        where = f"{field}[{i}]"
        obj = _obj(raw, where, _CHARGE)
        description = obj.get("description")
        charges.append(
            Charge(
                code=_id(obj["code"], f"{where}.code"),
                quantity=_decimal(
                    obj["quantity"], f"{where}.quantity", what="quantity", limit=MAX_QUANTITY
                ),
                rate=_decimal(obj["rate"], f"{where}.rate", what="rate", limit=MAX_RATE),
                description=None
                if description is None
                else _text(description, f"{where}.description", 4000),
            )
        )
        if charges[-1].amount > MAX_TOTAL:
            raise RecordError(where, f"amount (quantity x rate) must be at most {MAX_TOTAL}")
    result = tuple(charges)
    total = sum((c.amount for c in result), Decimal(0))
    if total <= 0:
        raise RecordError(field, "total must be positive")
    if total > MAX_TOTAL:
        raise RecordError(field, f"total must be at most {MAX_TOTAL}")
    return result


_PARTY = _Shape({"id", "name"}, set())
_STUDENT = _Shape({"id", "name"}, {"email"})
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_CHARGE = _Shape({"code", "quantity", "rate"}, {"description"})
_AIRCRAFT = _Shape({"tail", "type"}, set())
_HOBBS = _Shape({"start", "end"}, set())
_FLIGHT = _Shape(
    {"flight_id", "ended_at", "student", "instructor", "aircraft", "hobbs", "charges", "currency"},
    set(),
)
_INVOICE = _Shape({"request_id", "requested_at", "student", "charges", "currency"}, {"memo"})
_PAYMENT = _Shape(
    {"payment_id", "received_at", "student", "amount", "payment_type", "currency"},
    {"applies_to"},
)
_FLIGHT_FIELDS = {
    "flight_id", "ended_at", "student", "instructor", "aircraft", "hobbs", "charges", "currency"
}  # fmt: skip
_AMENDED = _Shape({*_FLIGHT_FIELDS, "amended_at"}, {"reason"})
_CANCELLED = _Shape({"flight_id", "cancelled_at", "reason"}, set())
_REFUNDED = _Shape(
    {"refund_id", "payment_id", "refunded_at", "amount", "currency"},
    {"reason"},
)


def parse_flight_ended(value: Any) -> FlightEndedRecord:
    """Validate a flight-ended record."""
    return _flight(_obj(value, "", _FLIGHT))


def _flight(obj: Mapping[str, Any]) -> FlightEndedRecord:
    aircraft = _obj(obj["aircraft"], "aircraft", _AIRCRAFT)
    hobbs_obj = _obj(obj["hobbs"], "hobbs", _HOBBS)
    start = _decimal(hobbs_obj["start"], "hobbs.start", what="hobbs reading")
    end = _decimal(hobbs_obj["end"], "hobbs.end", what="hobbs reading")
    if end < start:
        raise RecordError("hobbs.end", f"must be >= hobbs.start ({start})")
    return FlightEndedRecord(
        flight_id=_id(obj["flight_id"], "flight_id"),
        ended_at=_timestamp(obj["ended_at"], "ended_at"),
        student=_student(obj["student"]),
        instructor=_party(obj["instructor"], "instructor"),
        aircraft=Aircraft(
            tail=_id(aircraft["tail"], "aircraft.tail"),
            type=_id(aircraft["type"], "aircraft.type"),
        ),
        hobbs=Hobbs(start=start, end=end),
        charges=_charges(obj["charges"], "charges"),
        currency=_currency(obj["currency"], "currency"),
    )


def parse_invoice_requested(value: Any) -> InvoiceRequestedRecord:
    """Validate an invoice-requested record."""
    obj = _obj(value, "", _INVOICE)
    memo = obj.get("memo")
    return InvoiceRequestedRecord(
        request_id=_id(obj["request_id"], "request_id"),
        requested_at=_timestamp(obj["requested_at"], "requested_at"),
        student=_student(obj["student"]),
        charges=_charges(obj["charges"], "charges"),
        currency=_currency(obj["currency"], "currency"),
        memo=None if memo is None else _text(memo, "memo", MAX_MEMO_LENGTH),
    )


def parse_payment_received(value: Any) -> PaymentReceivedRecord:
    """Validate a payment-received record."""
    obj = _obj(value, "", _PAYMENT)
    amount = _decimal(obj["amount"], "amount", limit=MAX_TOTAL)
    if amount <= 0:
        raise RecordError("amount", "must be positive")
    applies_to = obj.get("applies_to")
    return PaymentReceivedRecord(
        payment_id=_id(obj["payment_id"], "payment_id"),
        received_at=_timestamp(obj["received_at"], "received_at"),
        student=_student(obj["student"]),
        amount=amount,
        payment_type=_id(obj["payment_type"], "payment_type"),
        currency=_currency(obj["currency"], "currency"),
        applies_to=None if applies_to is None else _id(applies_to, "applies_to"),
    )


def parse_flight_amended(value: Any) -> FlightAmendedRecord:
    """Validate a flight-amended record: the flight-ended shape plus amended_at and reason."""
    obj = _obj(value, "", _AMENDED)
    flight = _flight({k: v for k, v in obj.items() if k in _FLIGHT_FIELDS})
    reason = obj.get("reason")
    return FlightAmendedRecord(
        flight=flight,
        amended_at=_timestamp(obj["amended_at"], "amended_at"),
        reason=None if reason is None else _text(reason, "reason", MAX_MEMO_LENGTH),
    )


def parse_flight_cancelled(value: Any) -> FlightCancelledRecord:
    """Validate a flight-cancelled record."""
    obj = _obj(value, "", _CANCELLED)
    return FlightCancelledRecord(
        flight_id=_id(obj["flight_id"], "flight_id"),
        cancelled_at=_timestamp(obj["cancelled_at"], "cancelled_at"),
        reason=_text(obj["reason"], "reason", MAX_MEMO_LENGTH),
    )


def parse_payment_refunded(value: Any) -> PaymentRefundedRecord:
    """Validate a payment-refunded record (the payment's own total is checked when recorded)."""
    obj = _obj(value, "", _REFUNDED)
    amount = _decimal(obj["amount"], "amount", limit=MAX_TOTAL)
    if amount <= 0:
        raise RecordError("amount", "must be positive")
    reason = obj.get("reason")
    return PaymentRefundedRecord(
        refund_id=_id(obj["refund_id"], "refund_id"),
        payment_id=_id(obj["payment_id"], "payment_id"),
        refunded_at=_timestamp(obj["refunded_at"], "refunded_at"),
        amount=amount,
        currency=_currency(obj["currency"], "currency"),
        reason=None if reason is None else _text(reason, "reason", MAX_MEMO_LENGTH),
    )


CORRECTION_PARSERS: dict[RecordKind, Callable[[Any], Correction]] = {
    RecordKind.FLIGHT_AMENDED: parse_flight_amended,
    RecordKind.FLIGHT_CANCELLED: parse_flight_cancelled,
    RecordKind.PAYMENT_REFUNDED: parse_payment_refunded,
}


PARSERS: dict[RecordKind, Callable[[Any], Record]] = {
    RecordKind.FLIGHT_ENDED: parse_flight_ended,
    RecordKind.INVOICE_REQUESTED: parse_invoice_requested,
    RecordKind.PAYMENT_RECEIVED: parse_payment_received,
}


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key given twice is refused (which value would count is a guess)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RecordError(key[:80], "appears more than once in one object")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal, object_pairs_hook=_pairs)


def read_json_line(line: str) -> Any:
    """One JSON line as a value, numbers as exact decimals; every problem is a RecordError.

    Invalid JSON, nesting too deep for the parser, a key given twice and a line over
    MAX_LINE_BYTES are refused on field 'record' (or the key). Nesting that the parser reads but
    no record has is refused by the field checks ('must be a string', ...).
    """
    if len(line) > MAX_LINE_BYTES:
        raise RecordError("record", f"is longer than {MAX_LINE_BYTES} characters")
    return read_json_document(line)


def read_json_document(text: str) -> Any:
    """read_json_line without its length bound (an HTTP body, bounded by the server)."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise RecordError("record", f"{NOT_JSON}: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise RecordError("record", "nests objects or lists too deeply") from None


NOT_JSON = "is not valid JSON"


def parse_line(kind: RecordKind, line: str) -> Record:
    """Parse one JSON line of the given kind (read_json_line, then the kind's field checks)."""
    return PARSERS[kind](read_json_line(line))


def parse_correction_line(kind: RecordKind, line: str) -> Correction:
    """Parse one JSON line of a correction kind (flight-amended, -cancelled, payment-refunded)."""
    return CORRECTION_PARSERS[kind](read_json_line(line))


def record_to_data(record: Record) -> dict[str, Any]:
    """The record as event data: plain types with Decimal and datetime kept exact."""
    if isinstance(record, FlightEndedRecord):
        return {
            "flight_id": record.flight_id,
            "ended_at": record.ended_at,
            "student": _party_data(record.student),
            "instructor": {"id": record.instructor.id, "name": record.instructor.name},
            "aircraft": {"tail": record.aircraft.tail, "type": record.aircraft.type},
            "hobbs": {"start": record.hobbs.start, "end": record.hobbs.end},
            "charges": [_charge_data(c) for c in record.charges],
            "currency": record.currency,
        }
    if isinstance(record, InvoiceRequestedRecord):
        return {
            "request_id": record.request_id,
            "requested_at": record.requested_at,
            "student": _party_data(record.student),
            "charges": [_charge_data(c) for c in record.charges],
            "currency": record.currency,
            "memo": record.memo,
        }
    return {
        "payment_id": record.payment_id,
        "received_at": record.received_at,
        "student": _party_data(record.student),
        "amount": record.amount,
        "payment_type": record.payment_type,
        "currency": record.currency,
        "applies_to": record.applies_to,
    }


def _party_data(party: Party) -> dict[str, Any]:
    data: dict[str, Any] = {"id": party.id, "name": party.name}
    if party.email is not None:  # absent, not null, when the record carries none
        data["email"] = party.email
    return data


def _charge_data(charge: Charge) -> dict[str, Any]:
    data: dict[str, Any] = {"code": charge.code, "quantity": charge.quantity, "rate": charge.rate}
    if charge.description is not None:
        data["description"] = charge.description
    return data


def charges_from_data(data: list[dict[str, Any]]) -> tuple[Charge, ...]:
    """Rebuild charges from stored event data."""
    return tuple(
        Charge(
            code=str(c["code"]),
            quantity=Decimal(c["quantity"]),
            rate=Decimal(c["rate"]),
            description=c.get("description"),
        )
        for c in data
    )
