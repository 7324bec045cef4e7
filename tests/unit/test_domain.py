"""Unit tests of the aggregates, ids, preflight and reason texts (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.application import FlightLedger
from domain.connection import ConnectionState
from domain.financial_event import (
    STATUS_AFTER_FAILURE,
    FailureCategory,
    FinancialEvent,
    Status,
    TransitionRefused,
)
from domain.ids import doc_number, financial_event_id, request_id
from domain.ports import FixedClock, ReasonCode
from domain.preflight import check_connection, check_mappings, invoice_draft, payment_draft
from domain.reasons import command_for, fix_for
from domain.records import RecordKind, parse_flight_ended, parse_payment_received
from projections.financial_events import apply_event
from tests.factories import flight, payment

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def app() -> FlightLedger:
    """An in-memory (popo) application with a fixed clock."""
    return FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(NOW))


def _event(app: FlightLedger, **overrides: Any) -> FinancialEvent:
    return app.new_financial_event("default", parse_flight_ended(flight(**overrides)), actor="t")


def test_same_flight_gets_same_id_in_a_school_only() -> None:
    """Ids are uuid5 of (school, kind, source id): stable, and distinct across schools/kinds."""
    a = financial_event_id("north", "flight-ended", "F-1")
    assert a == financial_event_id("north", "flight-ended", "F-1")
    assert a != financial_event_id("south", "flight-ended", "F-1")
    assert a != financial_event_id("north", "invoice-requested", "F-1")
    assert len(request_id(a)) == 36


def test_doc_number_fits_qbo_limit() -> None:
    """DocNumbers are readable when short and hashed to 21 characters when long."""
    assert doc_number("flight-ended", "F-1001") == "FL-F-1001"
    long = doc_number("flight-ended", "X" * 64)
    assert len(long) == 21 and long.startswith("FL-")
    assert long == doc_number("flight-ended", "X" * 64)


def test_recording_twice_is_a_duplicate(app: FlightLedger) -> None:
    """The second record of one flight is refused as a duplicate and appends nothing."""
    record = parse_flight_ended(flight())
    assert app.record("default", record) is True
    before = app.recorder.max_notification_id()
    assert app.record("default", record) is False
    assert app.recorder.max_notification_id() == before


def test_lifecycle_statuses(app: FlightLedger) -> None:
    """pending -> syncing -> retrying -> syncing -> synced; amounts are exact decimals."""
    event = _event(app)
    assert event.status == Status.PENDING and event.amount == Decimal("270.00")
    event.start_push(request_id="r", doc_number="d", batched=False, actor="w", at=NOW)
    assert event.status == Status.SYNCING and event.attempts == 1
    event.mark_failed(
        category=FailureCategory.TRANSIENT, code="503", message="down", actor="w", at=NOW
    )
    assert event.status == Status.RETRYING and event.reason == "down"
    event.start_push(request_id="r", doc_number="d", batched=False, actor="w", at=NOW)
    event.mark_synced(qbo_id="7", doc_number="FL-F-1001", actor="w", at=NOW)
    assert (event.status, event.qbo_id, event.attempts) == (Status.SYNCED, "7", 2)
    with pytest.raises(TransitionRefused):
        event.start_push(request_id="r", doc_number="d", batched=False, actor="w", at=NOW)


def test_retry_only_requeues_what_waits_for_an_operator(app: FlightLedger) -> None:
    """RetryRequested is appended for action_required, not for pending or synced."""
    event = _event(app)
    assert event.request_retry(operator="ana", scope="ids", at=NOW) is False
    event.require_action(
        reason_code=ReasonCode.MISSING_MAPPING,
        message="Missing mapping: charge:fuel",
        missing=["charge:fuel"],
        actor="w",
        at=NOW,
    )
    assert event.status == Status.ACTION_REQUIRED and event.missing == ["charge:fuel"]
    version = event.version
    event.require_action(
        reason_code=ReasonCode.MISSING_MAPPING,
        message="Missing mapping: charge:fuel",
        missing=["charge:fuel"],
        actor="w",
        at=NOW,
    )
    assert event.version == version, "an unchanged reason is not repeated"
    assert event.request_retry(operator="ana", scope="ids", at=NOW) is True
    assert event.status == Status.PENDING and event.reason_code is None


def test_dismiss_refuses_synced(app: FlightLedger) -> None:
    """A synced invoice cannot be dismissed; a pending one can, with its note kept."""
    event = _event(app)
    event.dismiss(operator="ana", note="duplicate flight entry", at=NOW)
    assert event.status == Status.DISMISSED and event.reason == "duplicate flight entry"
    other = _event(app, flight_id="F-2")
    other.start_push(request_id="r", doc_number="d", batched=False, actor="w", at=NOW)
    other.mark_synced(qbo_id="1", doc_number="d", actor="w", at=NOW)
    with pytest.raises(TransitionRefused):
        other.dismiss(operator="ana", note="x", at=NOW)


def test_connection_preflight(app: FlightLedger) -> None:
    """Never connected -> not_connected; past the nearer expiry or invalid_grant -> auth_expired."""
    connection = app.connection("default")
    blocked = check_connection(connection, NOW)
    assert blocked is not None and blocked.reason_code == ReasonCode.NOT_CONNECTED
    connection.connect(
        realm="1",
        company="Sunrise",
        country="US",
        access_expires_at=NOW + timedelta(hours=1),
        refresh_expires_at=NOW + timedelta(days=100),
        hard_expires_at=NOW + timedelta(days=3),
        actor="ana",
        at=NOW,
    )
    assert check_connection(connection, NOW) is None
    late = check_connection(connection, NOW + timedelta(days=3))
    assert late is not None and late.reason_code == ReasonCode.AUTH_EXPIRED
    connection.expire(message="invalid_grant", at=NOW)
    assert connection.state == ConnectionState.EXPIRED
    expired = check_connection(connection, NOW)
    assert expired is not None and expired.reason_code == ReasonCode.AUTH_EXPIRED


def test_mapping_preflight_names_exact_keys(app: FlightLedger) -> None:
    """Missing charge codes, students and defaults are named; a code inactive here still goes."""
    event = _event(app)
    mappings = app.mappings("default")
    blocked = check_mappings(event, mappings)
    assert blocked is not None and blocked.reason_code == ReasonCode.MISSING_MAPPING
    assert set(blocked.missing) == {
        "student:S-7",
        "charge:aircraft_rental",
        "charge:instructor_dual",
        "default:term",
        "default:memo",
        "default:income_account",
    }
    mappings.map_student("S-7", "3", operator="a", at=NOW)
    mappings.map_charge("aircraft_rental", "1", active=True, operator="a", at=NOW)
    mappings.map_charge("instructor_dual", "2", active=False, operator="a", at=NOW)
    mappings.set_defaults(term_id="1", memo="Thanks", income_account_id="79", operator="a", at=NOW)
    assert check_mappings(event, mappings) is None  # no longer used by the school: still sent
    mappings.map_charge("instructor_dual", "2", active=True, operator="a", at=NOW)
    assert check_mappings(event, mappings) is None
    draft = invoice_draft(event, mappings)
    assert draft.customer_id == "3" and draft.total == Decimal("270.00")
    assert [line.item_id for line in draft.lines] == ["1", "2"]
    assert draft.doc_number == "FL-F-1001" and draft.request_id == str(event.id)


def test_payment_preflight_and_draft(app: FlightLedger) -> None:
    """A payment needs its student and a mapped payment type (inactive here is fine, article
    004); the draft links the invoice."""
    record = parse_payment_received(payment(applies_to="F-1001"))
    event = app.new_financial_event("default", record, actor="t")
    mappings = app.mappings("default")
    mappings.map_student("S-7", "3", operator="a", at=NOW)
    mappings.map_payment_type(
        "card", "35", payment_method_id="2", active=False, operator="a", at=NOW
    )
    assert check_mappings(event, mappings) is None
    mappings.map_payment_type(
        "card", "35", payment_method_id="2", active=True, operator="a", at=NOW
    )
    assert check_mappings(event, mappings) is None
    draft = payment_draft(event, mappings, linked_invoice_id="42")
    assert (draft.amount, draft.deposit_account_id, draft.linked_invoice_id) == (
        Decimal("270.00"),
        "35",
        "42",
    )


def test_fix_texts_name_the_keys() -> None:
    """Reason groups tell the operator exactly what to do."""
    text = fix_for("missing_mapping", ["charge:fuel_surcharge"])
    assert text == "Map charge code fuel_surcharge to a QuickBooks item, then press Retry Failed"
    assert fix_for("auth_expired") == "Reconnect QuickBooks, then press Retry Failed"
    assert command_for("student:S-7") == "flightledger mappings set student S-7 --customer ID"
    assert command_for("default:income_account") == (
        "flightledger mappings set defaults --income-account VALUE"
    )
    assert RecordKind("flight-ended") is RecordKind.FLIGHT_ENDED


def test_retry_failed_refuses_until_fixed(app: FlightLedger) -> None:
    """Retry Failed blocks a mapping group until mapped, then requeues once; twice is a no-op."""
    event = _event(app)
    event.require_action(
        reason_code=ReasonCode.MISSING_MAPPING,
        message="Missing mapping: student:S-7",
        missing=["student:S-7"],
        actor="w",
        at=NOW,
    )
    app.save(event)
    result = app.retry_failed("default", [app.financial_event(event.id)], operator="ana", scope="g")
    assert result.requeued == 0 and result.blocked and "student:S-7" in result.blocked[0]["why"]
    app.map_student("default", "S-7", "3", operator="ana")
    for name, code in (("aircraft_rental", "1"), ("instructor_dual", "2")):
        app.map_charge("default", name, code, operator="ana")
    app.set_defaults("default", operator="ana", term_id="1", memo="m", income_account_id="79")
    result = app.retry_failed("default", [app.financial_event(event.id)], operator="ana", scope="g")
    assert result.requeued == 1 and not result.blocked
    again = app.retry_failed("default", [app.financial_event(event.id)], operator="ana", scope="g")
    assert again.requeued == 0 and again.skipped == 1
    history = app.history("default", "F-1001")
    assert [h.type for h in history][-1] == "RetryRequested" and history[-1].actor == "ana"


@pytest.mark.parametrize("category", list(FailureCategory))
def test_a_failed_push_means_one_status_in_aggregate_and_view(
    app: FlightLedger, category: FailureCategory
) -> None:
    """Every failure category has one status, the same on the aggregate and in the view row."""
    event = _event(app)
    event.start_push(request_id="r", doc_number="d", batched=False, actor="w", at=NOW)
    event.mark_failed(category=category, code="500", message="down", actor="w", at=NOW)
    assert event.status == STATUS_AFTER_FAILURE[category]
    row = None
    for position, domain_event in enumerate(event.collect_events(), start=1):
        row = apply_event(row, domain_event, position)
    assert row is not None and row.status == event.status.value


def test_failures_since_the_last_retry_are_kept_on_the_aggregate(app: FlightLedger) -> None:
    """Failed pushes count until an operator's retry; a throttled one spends no attempt; the
    count comes back from the log as it was (no history replay by the worker)."""
    event = _event(app)

    def fail(*, spends_attempt: bool = True) -> None:
        event.start_push(request_id="r", doc_number="d", batched=False, actor="w", at=NOW)
        event.mark_failed(
            category=FailureCategory.TRANSIENT,
            code="503",
            message="down",
            actor="w",
            at=NOW,
            spends_attempt=spends_attempt,
        )

    assert event.failures == 0
    fail()
    fail(spends_attempt=False)
    fail()
    assert event.failures == 2
    app.save(event)
    assert app.financial_event(event.id).failures == 2
    event.start_push(request_id="r", doc_number="d", batched=False, actor="w", at=NOW)
    event.mark_failed(
        category=FailureCategory.EXHAUSTED, code="503", message="gave up", actor="w", at=NOW
    )
    assert event.request_retry(operator="ana", scope="ids", at=NOW)
    assert event.failures == 0
    fail()
    app.save(event)
    assert app.financial_event(event.id).failures == 1
