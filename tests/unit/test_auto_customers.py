"""Unit tests of auto-customers' pure rules: records' student email, matching, ids, retry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.application import SYSTEM, FlightLedger
from domain.customers import (
    Ambiguous,
    Create,
    CustomerCandidate,
    Match,
    NewStudent,
    decide,
    name_taken,
    new_students,
)
from domain.financial_event import FinancialEvent, Status
from domain.ids import customer_request_id
from domain.ports import FixedClock, ReasonCode
from domain.preflight import check_mappings
from domain.records import (
    RecordError,
    RecordKind,
    parse_flight_ended,
    parse_line,
    record_to_data,
)
from tests.factories import flight, invoice_request, jsonl, payment

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
ZOE = NewStudent("S-9", "Zoe Park", None)
ZOE_MAIL = NewStudent("S-9", "Zoe Park", "zoe@example.com")


@pytest.fixture
def app() -> FlightLedger:
    """An in-memory (popo) application with a fixed clock."""
    return FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(NOW))


def _c(cid: str, name: str = "Zoe Park", email: str | None = None, active: bool = True) -> Any:
    return CustomerCandidate(cid, name, email, active)


# --- student.email in the records -------------------------------------------------------------


def _with_email(kind: RecordKind, email: Any) -> dict[str, Any]:
    if kind == RecordKind.FLIGHT_ENDED:
        record = flight()
    elif kind == RecordKind.INVOICE_REQUESTED:
        record = invoice_request()
    else:
        record = payment()
    record["student"] = {**record["student"], "email": email}
    return record


FACTS = [RecordKind.FLIGHT_ENDED, RecordKind.INVOICE_REQUESTED, RecordKind.PAYMENT_RECEIVED]


@pytest.mark.parametrize("kind", FACTS)
def test_student_email_is_kept_in_the_event_data(kind: RecordKind) -> None:
    """Every record kind accepts student.email and keeps it in the recorded data."""
    record = parse_line(kind, jsonl([_with_email(kind, "Zoe.Park+solo@flight-school.example")]))
    assert record.student.email == "Zoe.Park+solo@flight-school.example"
    data = record_to_data(record)
    assert data["student"]["email"] == "Zoe.Park+solo@flight-school.example"


def test_record_without_email_has_no_email_key() -> None:
    """Without student.email the stored data is exactly as before (no null key)."""
    data = record_to_data(parse_flight_ended(flight()))
    assert data["student"] == {"id": "S-7", "name": "Student S-7"}


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        (42, "must be a string"),
        ("a@b", "the part after '@' must be a domain like example.com"),
        ("zoe.example.com", "must look like name@example.com (one '@')"),
        ("zoe@@example.com", "must look like name@example.com (one '@')"),
        ("zoe park@example.com", "must be printable ASCII without spaces"),
        ("zoé@example.com", "must be printable ASCII without spaces"),
        ("zoe@-example.com", "the part after '@' must be a domain like example.com"),
        ("zoe@example..com", "the part after '@' must be a domain like example.com"),
        ("<zoe>@example.com", "must not contain quotes, brackets, commas or semicolons"),
        ("x" * 65 + "@example.com", "the part before '@' must be at most 64"),
        ("z@" + "a" * 250 + ".com", "must be 3-254 characters"),
    ],
)
def test_bad_student_email_is_refused_by_field(email: Any, reason: str) -> None:
    """A malformed or oversized email is refused naming student.email and the reason."""
    with pytest.raises(RecordError) as caught:
        parse_flight_ended(_with_email(RecordKind.FLIGHT_ENDED, email))
    assert (caught.value.field, caught.value.reason) == ("student.email", reason)


def test_instructor_email_is_an_unknown_field() -> None:
    """Only the student carries an email; on the instructor it is refused as unknown."""
    record = flight(instructor={"id": "I-3", "name": "Sam Lee", "email": "sam@example.com"})
    with pytest.raises(RecordError) as caught:
        parse_flight_ended(record)
    assert (caught.value.field, caught.value.reason) == ("instructor.email", "unknown field")


# --- matching ---------------------------------------------------------------------------------


def test_no_customer_with_the_name_means_create() -> None:
    """Nobody with the name (or only an inactive one) in QuickBooks: create a customer."""
    assert decide(ZOE, []) == Create()
    assert decide(ZOE, [_c("7", active=False), _c("8", "Zoe Parker")]) == Create()


def test_one_active_customer_with_the_name_is_matched() -> None:
    """One active customer with the same name (case and spacing aside) is the student's."""
    assert decide(ZOE, [_c("7", "zoe  PARK")]) == Match(_c("7", "zoe  PARK"))


def test_two_customers_with_the_name_are_ambiguous_naming_both() -> None:
    """Two active candidates: a person decides; the message names both ids and names."""
    decision = decide(ZOE, [_c("12", "Zoe Park"), _c("7", "zoe park")])
    assert isinstance(decision, Ambiguous)
    assert [c.id for c in decision.candidates] == ["7", "12"]
    assert "customer 7 'zoe park'" in decision.message
    assert "customer 12 'Zoe Park'" in decision.message
    assert "S-9" in decision.message


def test_email_picks_the_right_one_of_two() -> None:
    """With an email on the record, the candidate with the same email wins over a namesake."""
    same = _c("12", email="ZOE@example.com")
    assert decide(ZOE_MAIL, [_c("7", email="other@example.com"), same]) == Match(same)


def test_customer_without_email_matches_a_record_with_one() -> None:
    """A same-named customer with no email on file is taken (nothing contradicts it)."""
    assert decide(ZOE_MAIL, [_c("7")]) == Match(_c("7"))


def test_namesake_with_another_email_is_not_matched() -> None:
    """The only namesake has another email: not matched, a person decides (both emails shown)."""
    decision = decide(ZOE_MAIL, [_c("7", email="zoe.old@example.com")])
    assert isinstance(decision, Ambiguous)
    assert "zoe.old@example.com" in decision.message and "zoe@example.com" in decision.message
    assert "customer 7 'Zoe Park'" in decision.message


def test_name_taken_says_what_qbo_said() -> None:
    """6240 with no active customer of the name: QBO's words and the way out."""
    decision = name_taken(ZOE, "Duplicate Name Exists Error (code 6240, HTTP 400)")
    assert "Duplicate Name Exists Error (code 6240, HTTP 400)" in decision.message
    assert "map the student to a customer" in decision.message


def test_new_students_are_the_unmapped_ones_with_their_email(app: FlightLedger) -> None:
    """Mapped students are skipped; an email from a later event fills the gap."""
    app.map_student("default", "S-1", "3", operator="ana")
    events = [
        _event(app, "F-1", "S-1"),
        _event(app, "F-2", "S-2"),
        _event(app, "F-3", "S-2", email="s2@example.com"),
    ]
    found = new_students(events, app.mappings("default"))
    assert found == {"S-2": NewStudent("S-2", "Student S-2", "s2@example.com")}


def _event(app: FlightLedger, ref: str, student: str, email: str | None = None) -> FinancialEvent:
    record = flight(ref, student)
    if email:
        record["student"]["email"] = email
    return app.new_financial_event("default", parse_flight_ended(record), actor="t")


def test_customer_request_id_is_stable_and_short() -> None:
    """The create's requestid is derived from school + student: same every time, fits QBO."""
    rid = customer_request_id("north", "S-9")
    assert rid == customer_request_id("north", "S-9")
    assert rid != customer_request_id("south", "S-9")
    assert rid != customer_request_id("north", "S-10")
    assert len(rid) <= 36


# --- settings, mappings and Retry Failed ------------------------------------------------------


def test_auto_customers_setting_is_off_until_switched_and_keeps_the_operator(
    app: FlightLedger,
) -> None:
    """Off by default; each switch is an event on Settings with its operator."""
    assert app.settings("default").auto_customers is False
    app.set_auto_customers("default", True, operator="ana")
    assert app.settings("default").auto_customers is True
    entry = app.history("default", "settings")[-1]
    assert (entry.type, entry.actor, entry.data["enabled"]) == ("AutoCustomersSet", "ana", True)


def test_auto_mapping_is_recorded_by_system_with_its_create(app: FlightLedger) -> None:
    """CustomerCreateStarted then StudentAutoMapped (actor system) settle the create."""
    mappings = app.mappings("default")
    rid = customer_request_id("default", "S-9")
    for _ in range(2):  # a second start of the same create appends nothing
        mappings.start_customer_create(
            "S-9", request_id=rid, display_name="Zoe Park", email=None, operator=SYSTEM, at=NOW
        )
    app.save(mappings)
    assert app.mappings("default").customer_creates == {"S-9": rid}
    mappings = app.mappings("default")
    mappings.auto_map_student(
        "S-9", "22", how="created", display_name="Zoe Park", operator=SYSTEM, at=NOW
    )
    app.save(mappings)
    again = app.mappings("default")
    assert (again.students, again.customer_creates) == ({"S-9": "22"}, {})
    history = [(e.type, e.actor) for e in app.history("default", "mappings")]
    assert history[-2:] == [("CustomerCreateStarted", SYSTEM), ("StudentAutoMapped", SYSTEM)]
    assert app.history("default", "mappings")[-1].data["request_id"] == rid


def _needing_action(app: FlightLedger, reason: ReasonCode, student: str = "S-9") -> FinancialEvent:
    app.record("default", parse_flight_ended(flight("F-9", student)))
    event = app.find("default", "F-9")
    event.require_action(reason_code=reason, message="m", missing=[], actor="w", at=NOW)
    app.save(event)
    return event


def _retry(app: FlightLedger) -> Any:
    return app.retry_failed("default", [app.find("default", "F-9")], operator="ana", scope="reason")


def _map_all_but_students(app: FlightLedger) -> None:
    app.map_charge("default", "aircraft_rental", "1", operator="ana")
    app.map_charge("default", "instructor_dual", "2", operator="ana")
    app.set_defaults("default", operator="ana", term_id="1", memo="m", income_account_id="79")


def test_retry_refuses_ambiguous_customer_until_the_student_is_mapped(app: FlightLedger) -> None:
    """ambiguous_customer stays blocked until a person maps the student; then it requeues."""
    _needing_action(app, ReasonCode.AMBIGUOUS_CUSTOMER)
    blocked = _retry(app)
    assert blocked.requeued == 0
    assert blocked.blocked[0]["reason_code"] == "ambiguous_customer"
    assert "S-9" in blocked.blocked[0]["why"]
    app.map_student("default", "S-9", "7", operator="ana")
    assert _retry(app).requeued == 1
    assert app.find("default", "F-9").status == Status.PENDING


def test_missing_student_does_not_block_retry_with_auto_customers_on(app: FlightLedger) -> None:
    """A student-only missing_mapping waits for a person when off, for the worker when on."""
    _map_all_but_students(app)
    event = _needing_action(app, ReasonCode.MISSING_MAPPING)
    mappings = app.mappings("default")
    assert check_mappings(event, mappings) is not None
    assert check_mappings(event, mappings, auto_customers=True) is None
    assert _retry(app).requeued == 0
    app.set_auto_customers("default", True, operator="ana")
    assert _retry(app).requeued == 1
