"""Naming the mapping behind a 610/2500 fault: QBO names an element, the operator needs a key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.application import FlightLedger
from domain.ports import FixedClock, OutcomeKind, PushOutcome, ReasonCode
from domain.preflight import invoice_draft, payment_draft
from domain.qbo_lists import QboLists, QboObject
from domain.reasons import fix_for
from domain.records import parse_flight_ended, parse_payment_received
from domain.sync import blamed_mappings
from tests.factories import flight, payment

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
ITEM_REF = "Line.SalesItemLineDetail.ItemRef"


def _setup() -> tuple[object, object]:
    app = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(NOW))
    event = app.new_financial_event("default", parse_flight_ended(flight()), actor="t")
    mappings = app.mappings("default")
    mappings.map_student("S-7", "7", operator="a", at=NOW)
    mappings.map_charge("aircraft_rental", "1", active=True, operator="a", at=NOW)
    mappings.map_charge("instructor_dual", "2", active=True, operator="a", at=NOW)
    mappings.set_defaults(term_id="1", memo="m", income_account_id="79", operator="a", at=NOW)
    return event, invoice_draft(event, mappings)


def _fault(
    message: str, element: str = ITEM_REF, reason: ReasonCode = ReasonCode.INACTIVE_MAPPING
) -> PushOutcome:
    event, _ = _setup()
    return PushOutcome(
        event_id=event.id,  # type: ignore[attr-defined]
        kind=OutcomeKind.ACTION_REQUIRED,
        reason_code=reason,
        code="610" if reason == ReasonCode.INACTIVE_MAPPING else "2500",
        message=message,
        missing=(element,) if element else (),
    )


def test_lookup_narrows_to_the_inactive_item() -> None:
    """With the lookup's answer, only the charge code mapped to the inactive item is named."""
    event, draft = _setup()
    keys, sentence = blamed_mappings(
        event,  # type: ignore[arg-type]
        draft,  # type: ignore[arg-type]
        _fault("Object Not Found: made inactive"),
        frozenset({"Item:2"}),
    )
    assert keys == ["charge:instructor_dual"]
    assert sentence == (
        " Charge code instructor_dual is mapped to QuickBooks item 2, which is inactive."
    )


def test_an_id_in_qbo_message_is_used() -> None:
    """A 2500 detail naming 'Item 1' blames the charge code mapped to item 1."""
    event, draft = _setup()
    fault = _fault("Invalid Reference Id: you must restore Item 1 (deleted)")
    keys, _ = blamed_mappings(event, draft, fault)  # type: ignore[arg-type]
    assert keys == ["charge:aircraft_rental"]


def test_without_a_clue_every_candidate_is_listed() -> None:
    """No id and no lookup: every item reference of the invoice is a candidate, said as such."""
    event, draft = _setup()
    keys, sentence = blamed_mappings(event, draft, _fault("made inactive"))  # type: ignore[arg-type]
    assert keys == ["charge:aircraft_rental", "charge:instructor_dual"]
    assert sentence.startswith(" One of these is inactive: Charge code aircraft_rental is ")


def test_customer_reference_names_the_student() -> None:
    """A CustomerRef element blames the student's mapping, not the items."""
    event, draft = _setup()
    fault = _fault("made inactive", element="CustomerRef")
    keys, _ = blamed_mappings(event, draft, fault, frozenset({"Customer:7"}))  # type: ignore[arg-type]
    assert keys == ["student:S-7"]


def _gone(element: str, message: str = "Invalid Reference Id") -> PushOutcome:
    return _fault(message, element=element, reason=ReasonCode.INVALID_REFERENCE)


def _lists(**ids: list[str]) -> QboLists:
    objects = {
        entity: {i: QboObject(entity, i, f"{entity} {i}", True) for i in found}
        for entity, found in ids.items()
    }
    return QboLists(school="default", realm="r", fetched_at=NOW, objects=objects)


def test_2500_on_a_line_names_the_charge_code_by_the_item_quickbooks_does_not_know() -> None:
    """A 2500 on ItemRef, the cached lists lacking item 2: instructor_dual, in plain words."""
    event, draft = _setup()
    keys, sentence = blamed_mappings(
        event,  # type: ignore[arg-type]
        draft,  # type: ignore[arg-type]
        _gone(ITEM_REF),
        lists=_lists(Item=["1"], Customer=["7"]),
    )
    assert keys == ["charge:instructor_dual"]
    assert sentence == (
        " Charge code instructor_dual is mapped to QuickBooks item 2, which does not exist in"
        " QuickBooks."
    )
    assert "ItemRef" not in sentence


def test_2500_with_a_line_index_names_that_lines_charge_code() -> None:
    """Line[0].SalesItemLineDetail.ItemRef: the first line's charge code only."""
    event, draft = _setup()
    element = "Line[0].SalesItemLineDetail.ItemRef"
    keys, _ = blamed_mappings(event, draft, _gone(element))  # type: ignore[arg-type]
    assert keys == ["charge:aircraft_rental"]


@pytest.mark.parametrize(
    ("element", "key", "words"),
    [
        ("CustomerRef", "student:S-7", "Student S-7 is mapped to QuickBooks customer 7"),
        ("SalesTermRef", "default:term", "The default term is QuickBooks term 1"),
    ],
)
def test_2500_invoice_header_elements_name_their_mapping(
    element: str, key: str, words: str
) -> None:
    """CustomerRef -> the student, SalesTermRef -> the default term, never the element path."""
    event, draft = _setup()
    keys, sentence = blamed_mappings(event, draft, _gone(element))  # type: ignore[arg-type]
    assert keys == [key]
    assert sentence == f" {words}, which does not exist in QuickBooks."


@pytest.mark.parametrize(
    ("element", "words"),
    [
        ("DepositToAccountRef", "Payment type card is mapped to QuickBooks account 35"),
        ("PaymentMethodRef", "Payment type card is mapped to QuickBooks payment method 4"),
    ],
)
def test_2500_on_a_payment_names_the_payment_type(element: str, words: str) -> None:
    """A payment's DepositToAccountRef / PaymentMethodRef: the payment type behind it."""
    app = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(NOW))
    event = app.new_financial_event("default", parse_payment_received(payment()), actor="t")
    mappings = app.mappings("default")
    mappings.map_student("S-7", "7", operator="a", at=NOW)
    mappings.map_payment_type(
        "card", "35", payment_method_id="4", active=True, operator="a", at=NOW
    )
    draft = payment_draft(event, mappings, None)
    keys, sentence = blamed_mappings(event, draft, _gone(element))
    assert keys == ["payment_type:card"]
    assert sentence == f" {words}, which does not exist in QuickBooks."


def test_an_unknown_element_blames_nothing() -> None:
    """An element we do not map (ClassRef) names no mapping rather than a wrong one."""
    event, draft = _setup()
    assert blamed_mappings(event, draft, _gone("ClassRef")) == ([], "")  # type: ignore[arg-type]


def test_fix_text_names_the_mapping_in_plain_words() -> None:
    """The reason group's fix names the charge code, not QBO's element path."""
    text = fix_for("invalid_reference", ["charge:fuel_surcharge", ITEM_REF])
    assert text == (
        "Charge code fuel_surcharge points at a QuickBooks object that does not exist: map charge"
        " code fuel_surcharge to an existing QuickBooks item, then press Retry Failed"
    )
    assert "ItemRef" not in fix_for("inactive_mapping", ["student:S-7", "CustomerRef"])
