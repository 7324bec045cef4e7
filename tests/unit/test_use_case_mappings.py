"""services/mappings.py: what a mapping is checked against and what is recorded (in-memory)."""

from __future__ import annotations

import pytest

from domain.application import FlightLedger
from domain.ports import FixedClock
from domain.qbo_lists import ACCOUNT, ITEM, PAYMENT_METHOD, QboLists, QboObject
from services import mappings as use_case
from tests.fakes import T0

SCHOOL = "alpha"


@pytest.fixture
def ledger() -> FlightLedger:
    """An in-memory ledger at T0."""
    return FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))


def lists(*objects: QboObject) -> QboLists:
    """QuickBooks' lists holding exactly these objects."""
    found: dict[str, dict[str, QboObject]] = {}
    for obj in objects:
        found.setdefault(obj.entity, {})[obj.id] = obj
    return QboLists(SCHOOL, "realm", T0, found)


QUICKBOOKS = lists(
    QboObject(ITEM, "1", "Aircraft rental", True),
    QboObject(ITEM, "5", "Old rental", False),
    QboObject(ACCOUNT, "35", "Checking", True, type="Bank"),
    QboObject(PAYMENT_METHOD, "7", "Cheque", False),
)


def test_a_missing_id_is_refused_even_when_inactive_ones_are_allowed(ledger: FlightLedger) -> None:
    """A nonexistent item is refused naming it; nothing is recorded."""
    change = use_case.MappingChange(use_case.CHARGE, "fuel", "999")
    with pytest.raises(use_case.ReferenceRefused) as refused:
        use_case.set_mapping(
            ledger, SCHOOL, change, operator="ana", lists=QUICKBOOKS, allow_inactive=True
        )
    assert refused.value.sentence("qbo_id") == "qbo_id: QuickBooks item 999 does not exist"
    assert "fuel" not in ledger.mappings(SCHOOL).charges


def test_an_inactive_id_is_refused_unless_allowed_then_reported(ledger: FlightLedger) -> None:
    """Inactive: refused with 'choose an active one'; allowed, recorded and reported back."""
    change = use_case.MappingChange(use_case.CHARGE, "rental", "5")
    with pytest.raises(use_case.ReferenceRefused) as refused:
        use_case.set_mapping(ledger, SCHOOL, change, operator="ana", lists=QUICKBOOKS)
    assert refused.value.sentence("Item") == (
        "Item: QuickBooks item 5 (Old rental) is inactive in QuickBooks: choose an active one"
    )
    checked = use_case.set_mapping(
        ledger, SCHOOL, change, operator="ana", lists=QUICKBOOKS, allow_inactive=True
    )
    assert checked.checked
    assert [(r.part, p.state) for r, p in checked.accepted_inactive] == [("qbo_id", "inactive")]
    assert ledger.mappings(SCHOOL).charges["rental"] == "5"


def test_the_payment_method_is_checked_second_and_without_lists_nothing_is(
    ledger: FlightLedger,
) -> None:
    """A payment type names its deposit account, then its payment method (refused by part);
    without lists the mapping is recorded unchecked."""
    change = use_case.MappingChange(use_case.PAYMENT_TYPE, "cheque", "35", payment_method_id="7")
    with pytest.raises(use_case.ReferenceRefused) as refused:
        use_case.set_mapping(ledger, SCHOOL, change, operator="ana", lists=QUICKBOOKS)
    assert refused.value.reference.part == use_case.PAYMENT_METHOD_ID
    checked = use_case.set_mapping(ledger, SCHOOL, change, operator="ana", lists=None)
    assert not checked.checked
    assert ledger.mappings(SCHOOL).payment_types["cheque"].payment_method_id == "7"


def test_refusals_of_defaults_students_and_switches(ledger: FlightLedger) -> None:
    """Defaults need one value; a student mapping cannot be inactive; a switch is on or off."""
    with pytest.raises(use_case.NothingToSet):
        use_case.set_defaults(ledger, SCHOOL, operator="ana", lists=QUICKBOOKS)
    student = use_case.MappingChange(use_case.STUDENT, "S-1", "58", active=False)
    with pytest.raises(use_case.MappingRefused, match="active: a student mapping cannot be"):
        use_case.set_mapping(ledger, SCHOOL, student, operator="ana", lists=None)
    assert "S-1" not in ledger.mappings(SCHOOL).students
    with pytest.raises(use_case.InvalidSwitch, match="must be 'on' or 'off', not 'yes'"):
        use_case.set_switch(ledger, SCHOOL, "auto_invoice", "yes", operator="ana")
    assert use_case.set_switch(ledger, SCHOOL, "auto_customers", "on", operator="ana")
    assert ledger.settings(SCHOOL).auto_customers
