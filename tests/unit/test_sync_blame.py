"""Naming the mapping behind a 610/2500 fault: QBO names an element, the operator needs a key."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.application import FlightLedger
from domain.ports import FixedClock, OutcomeKind, PushOutcome, ReasonCode
from domain.preflight import invoice_draft
from domain.records import parse_flight_ended
from domain.sync import blamed_mappings
from tests.factories import flight

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


def _fault(message: str, element: str = ITEM_REF) -> PushOutcome:
    event, _ = _setup()
    return PushOutcome(
        event_id=event.id,  # type: ignore[attr-defined]
        kind=OutcomeKind.ACTION_REQUIRED,
        reason_code=ReasonCode.INACTIVE_MAPPING,
        code="610",
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
    assert sentence == " Inactive in QuickBooks: charge code instructor_dual -> item 2."


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
    assert sentence.startswith(" Mapped here (one of them is affected): ")


def test_customer_reference_names_the_student() -> None:
    """A CustomerRef element blames the student's mapping, not the items."""
    event, draft = _setup()
    fault = _fault("made inactive", element="CustomerRef")
    keys, _ = blamed_mappings(event, draft, fault, frozenset({"Customer:7"}))  # type: ignore[arg-type]
    assert keys == ["student:S-7"]
