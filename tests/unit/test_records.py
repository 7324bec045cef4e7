"""Every validation rule of CLI.md "Input records", for the three record kinds."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from domain.records import (
    CREATION_KINDS,
    FlightEndedRecord,
    PaymentReceivedRecord,
    RecordError,
    RecordKind,
    parse_line,
)
from tests.factories import flight, invoice_request, payment

FE, IR, PR = RecordKind.FLIGHT_ENDED, RecordKind.INVOICE_REQUESTED, RecordKind.PAYMENT_RECEIVED
VALID: dict[RecordKind, Callable[..., dict[str, Any]]] = {
    FE: flight,
    IR: invoice_request,
    PR: payment,
}
ID_FIELD = {FE: "flight_id", IR: "request_id", PR: "payment_id"}
TIME_FIELD = {FE: "ended_at", IR: "requested_at", PR: "received_at"}
REQUIRED = {
    FE: ["flight_id", "ended_at", "student", "instructor", "aircraft", "hobbs", "charges"],
    IR: ["request_id", "requested_at", "student", "charges", "currency"],
    PR: ["payment_id", "received_at", "student", "amount", "payment_type", "currency"],
}


def refused(kind: RecordKind, record: Any) -> tuple[str, str]:
    """(field, reason) of the refusal; fails the test if the record is accepted."""
    with pytest.raises(RecordError) as info:
        parse_line(kind, record if isinstance(record, str) else json.dumps(record))
    return info.value.field, info.value.reason


def with_(kind: RecordKind, **changes: Any) -> dict[str, Any]:
    record = VALID[kind]()
    record.update(changes)
    return record


@pytest.mark.parametrize("kind", list(CREATION_KINDS))
def test_valid_records_parse(kind: RecordKind) -> None:
    """The factory records of every kind are accepted."""
    assert parse_line(kind, json.dumps(VALID[kind]())).kind == kind


def test_flight_total_is_sum_of_charges_in_exact_decimals() -> None:
    """A flight's total is the exact sum of quantity x rate."""
    record = parse_line(FE, json.dumps(flight()))
    assert isinstance(record, FlightEndedRecord)
    assert record.total == Decimal("270.00")


def test_numbers_are_read_as_exact_decimals() -> None:
    """JSON numbers are parsed as Decimal, never through float."""
    record = parse_line(PR, json.dumps(payment(amount=0.1)).replace("0.1", "0.10"))
    assert isinstance(record, PaymentReceivedRecord)
    assert record.amount == Decimal("0.10")


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k in CREATION_KINDS for f in REQUIRED[k]])
def test_missing_required_field_is_named(kind: RecordKind, field: str) -> None:
    """Dropping any required field is refused naming that field."""
    record = VALID[kind]()
    del record[field]
    assert refused(kind, record) == (field, "is required")


@pytest.mark.parametrize("kind", list(CREATION_KINDS))
def test_unknown_field_is_refused(kind: RecordKind) -> None:
    """An unknown top-level field is refused."""
    assert refused(kind, with_(kind, colour="red")) == ("colour", "unknown field")


@pytest.mark.parametrize("kind", list(CREATION_KINDS))
def test_unknown_nested_field_is_refused(kind: RecordKind) -> None:
    """An unknown field inside the student object is refused with its path."""
    record = with_(kind, student={"id": "S-1", "name": "A", "phone": "555"})
    assert refused(kind, record) == ("student.phone", "unknown field")


@pytest.mark.parametrize("kind", [FE, IR])
def test_unknown_charge_field_is_refused(kind: RecordKind) -> None:
    """An unknown field inside a charge is refused with its index."""
    charges = [{"code": "x", "quantity": "1", "rate": "1", "tax": "0"}]
    assert refused(kind, with_(kind, charges=charges)) == ("charges[0].tax", "unknown field")


@pytest.mark.parametrize("kind", list(CREATION_KINDS))
@pytest.mark.parametrize(
    ("value", "reason_part"),
    [("", "1-64"), ("x" * 65, "1-64"), ("a\x00b", "printable"), (" F", "printable"), (7, "string")],
)
def test_ids_are_one_to_64_printable_characters(
    kind: RecordKind, value: Any, reason_part: str
) -> None:
    """Source ids must be 1-64 printable characters."""
    field, reason = refused(kind, with_(kind, **{ID_FIELD[kind]: value}))
    assert field == ID_FIELD[kind] and reason_part in reason


@pytest.mark.parametrize("kind", list(CREATION_KINDS))
def test_id_of_64_characters_is_accepted(kind: RecordKind) -> None:
    """The longest allowed id (64 characters) is accepted."""
    assert parse_line(kind, json.dumps(with_(kind, **{ID_FIELD[kind]: "x" * 64})))


@pytest.mark.parametrize("kind", list(CREATION_KINDS))
@pytest.mark.parametrize("value", ["2026-11-20T17:42:00", "yesterday", "2026-13-01T00:00:00Z", 5])
def test_timestamps_must_be_iso_with_time_zone(kind: RecordKind, value: Any) -> None:
    """Timestamps must be ISO 8601 date-times with a time zone."""
    field, _ = refused(kind, with_(kind, **{TIME_FIELD[kind]: value}))
    assert field == TIME_FIELD[kind]


@pytest.mark.parametrize("kind", list(CREATION_KINDS))
@pytest.mark.parametrize("value", ["usd", "US", "EURO", 840, "ÜSD"])
def test_currency_is_three_upper_case_letters(kind: RecordKind, value: Any) -> None:
    """Currency must be a 3-letter ISO code."""
    assert refused(kind, with_(kind, currency=value))[0] == "currency"


@pytest.mark.parametrize("kind", [FE, IR])
@pytest.mark.parametrize("part", ["quantity", "rate"])
@pytest.mark.parametrize(
    ("value", "reason_part"),
    [
        ("1.001", "more than 2 decimal places"),
        ("-1", ">= 0"),
        ("abc", "not a decimal"),
        (True, "decimal string or number"),
        ("NaN", "finite"),
    ],
)
def test_charge_numbers(kind: RecordKind, part: str, value: Any, reason_part: str) -> None:
    """Quantities and rates: decimals with at most 2 places, >= 0."""
    charge = {"code": "x", "quantity": "1", "rate": "1", part: value}
    field, reason = refused(kind, with_(kind, charges=[charge]))
    assert field == f"charges[0].{part}" and reason_part in reason


@pytest.mark.parametrize("kind", [FE, IR])
def test_total_must_be_positive(kind: RecordKind) -> None:
    """Charges adding up to zero are refused."""
    charges = [{"code": "x", "quantity": "0", "rate": "165.00"}]
    assert refused(kind, with_(kind, charges=charges)) == ("charges", "total must be positive")


@pytest.mark.parametrize("kind", [FE, IR])
def test_charges_must_be_a_non_empty_list(kind: RecordKind) -> None:
    """No charges, or charges that are not a list, are refused."""
    assert refused(kind, with_(kind, charges=[]))[0] == "charges"
    assert refused(kind, with_(kind, charges={"code": "x"}))[0] == "charges"


def test_hobbs_end_before_start_is_refused() -> None:
    """hobbs.end < hobbs.start is refused on hobbs.end."""
    field, reason = refused(FE, flight(hobbs={"start": "10.0", "end": "9.9"}))
    assert field == "hobbs.end" and "hobbs.start" in reason


def test_hobbs_end_equal_to_start_is_accepted() -> None:
    """hobbs.end == hobbs.start is allowed."""
    assert parse_line(FE, json.dumps(flight(hobbs={"start": "10.0", "end": "10.0"})))


def test_hobbs_reading_with_three_places_is_refused() -> None:
    """Hobbs readings obey the 2-places rule."""
    assert refused(FE, flight(hobbs={"start": "10.001", "end": "11"}))[0] == "hobbs.start"


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [("0", "positive"), ("0.00", "positive"), ("-5", ">= 0"), ("1.234", "2 decimal places")],
)
def test_payment_amount_rules(value: str, reason_part: str) -> None:
    """A payment's amount is positive with at most 2 places."""
    field, reason = refused(PR, payment(amount=value))
    assert field == "amount" and reason_part in reason


def test_payment_applies_to_is_an_id() -> None:
    """applies_to, when given, follows the id rules."""
    assert refused(PR, payment(applies_to=""))[0] == "applies_to"
    assert parse_line(PR, json.dumps(payment(applies_to="F-1001")))


def test_invoice_memo_is_optional_text() -> None:
    """memo may be omitted, must be printable text when given."""
    record = invoice_request()
    del record["memo"]
    assert parse_line(IR, json.dumps(record))
    assert refused(IR, {**invoice_request(), "memo": "  "})[0] == "memo"


@pytest.mark.parametrize("kind", list(CREATION_KINDS))
@pytest.mark.parametrize(("sub", "value"), [("id", ""), ("name", ""), ("name", 3)])
def test_student_id_and_name(kind: RecordKind, sub: str, value: Any) -> None:
    """student.id is an id, student.name non-empty text."""
    student = {"id": "S-1", "name": "Ana", sub: value}
    assert refused(kind, with_(kind, student=student))[0] == f"student.{sub}"


@pytest.mark.parametrize("line", ["{not json", "[1, 2]", "42", '"text"'])
def test_line_must_be_a_json_object(line: str) -> None:
    """A line that is not a JSON object is refused on 'record'."""
    assert refused(FE, line)[0] == "record"
