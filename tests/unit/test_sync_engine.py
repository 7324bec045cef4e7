"""Unit tests of the sync engine against the fake gateway and the log-backed fake view."""

from __future__ import annotations

import random

import pytest

from domain.application import FlightLedger
from domain.connection import ConnectionState
from domain.financial_event import FinancialEvent, Status
from domain.ids import financial_event_id
from domain.ports import FixedClock
from domain.preflight import invoice_draft
from domain.sync import RetryPolicy
from services.push_pass import SyncEngine
from tests.fakes import (
    T0,
    FakeAccountingGateway,
    FakeFinancialEventView,
    connect,
    map_everything,
    ready_school,
    record_flights,
    record_payment,
)

SCHOOL = "default"


@pytest.fixture
def clock() -> FixedClock:
    """A clock standing at T0."""
    return FixedClock(T0)


@pytest.fixture
def ledger(clock: FixedClock) -> FlightLedger:
    """An in-memory ledger."""
    return FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)


@pytest.fixture
def gateway(ledger: FlightLedger) -> FakeAccountingGateway:
    """A fake QBO that notes each event's status at call time."""
    return FakeAccountingGateway(ledger=ledger)


def engine_for(
    ledger: FlightLedger, gateway: FakeAccountingGateway, **kwargs: object
) -> SyncEngine:
    """An engine over the fake view and the fake gateway."""
    return SyncEngine(
        ledger,
        FakeFinancialEventView(ledger),
        lambda school: gateway,
        rng=random.Random(7),
        **kwargs,  # type: ignore[arg-type]
    )


def event(ledger: FlightLedger, ref: str, kind: str = "flight-ended") -> FinancialEvent:
    """The aggregate of one recorded fact."""
    return ledger.financial_event(financial_event_id(SCHOOL, kind, ref))


def statuses(ledger: FlightLedger) -> dict[str, str]:
    """Reference -> status of every event of the school."""
    return {e.reference: e.status.value for e in ledger.iter_financial_events(SCHOOL)}


# --- preflight ------------------------------------------------------------------------------


def test_not_connected_goes_to_action_required_without_calls(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """Never connected: every pending event becomes action_required not_connected; no call."""
    map_everything(ledger)
    record_flights(ledger, 3)
    report = engine_for(ledger, gateway).run_pass(SCHOOL)
    assert gateway.calls == []
    assert {e.reason_code for e in ledger.iter_financial_events(SCHOOL)} == {"not_connected"}
    assert report.outcomes == {"action_required": 3}


def test_expired_connection_goes_to_auth_expired_without_calls(
    ledger: FlightLedger, gateway: FakeAccountingGateway, clock: FixedClock
) -> None:
    """A refresh token past its expiry: auth_expired for every waiting event; no call."""
    connect(ledger, days=1)
    map_everything(ledger)
    record_flights(ledger, 2)
    clock.advance(2 * 86400)
    engine_for(ledger, gateway).run_pass(SCHOOL)
    assert gateway.calls == []
    flights = list(ledger.iter_financial_events(SCHOOL))
    assert {(e.status, e.reason_code) for e in flights} == {
        (Status.ACTION_REQUIRED, "auth_expired")
    }
    assert "Reconnect" in flights[0].reason


def test_missing_charge_code_names_the_key(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """An unmapped charge code: missing_mapping with the exact key; others still sync."""
    ready_school(ledger, skip_charge="instructor_dual")
    record_flights(ledger, 2)
    record_payment(ledger, "P-1")
    engine_for(ledger, gateway).run_pass(SCHOOL)
    f1 = event(ledger, "F-1")
    assert (f1.status, f1.reason_code) == (Status.ACTION_REQUIRED, "missing_mapping")
    assert f1.missing == ["charge:instructor_dual"]
    assert event(ledger, "P-1", "payment-received").status == Status.SYNCED
    assert gateway.invoice_count == 0


def test_inactive_payment_type_and_missing_defaults(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """A payment type inactive here still syncs (article 004); unset defaults -> missing."""
    connect(ledger)
    map_everything(ledger, defaults=False)
    ledger.map_payment_type(SCHOOL, "card", "36", operator="t", active=False)
    record_flights(ledger, 1)
    record_payment(ledger, "P-1")
    engine_for(ledger, gateway).run_pass(SCHOOL)
    p1 = event(ledger, "P-1", "payment-received")
    assert p1.reason_code != "inactive_mapping" and p1.missing == []
    f1 = event(ledger, "F-1")
    assert f1.reason_code == "missing_mapping"
    assert f1.missing == ["default:term", "default:memo", "default:income_account"]
    assert gateway.calls == [("payment", 1)]  # the payment of the inactive type was sent


def test_auto_invoice_off_skips_the_school(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """With auto-invoice off nothing is pushed and events stay pending."""
    ready_school(ledger)
    record_flights(ledger, 2)
    ledger.set_auto_invoice(SCHOOL, False, operator="t")
    report = engine_for(ledger, gateway).run_pass(SCHOOL)
    assert report.skipped == "auto_invoice_off"
    assert set(statuses(ledger).values()) == {"pending"}


# --- pushing --------------------------------------------------------------------------------


def test_45_pending_go_in_two_batches_recorded_before_the_call(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """45 waiting invoices -> batch calls of 30 and 15, each event syncing when QBO is called."""
    ready_school(ledger)
    record_flights(ledger, 45)
    report = engine_for(ledger, gateway).run_pass(SCHOOL)
    assert gateway.calls == [("batch", 30), ("batch", 15)]
    assert gateway.statuses_at_call == ["syncing"] * 45
    assert set(statuses(ledger).values()) == {"synced"}
    assert gateway.invoice_count == 45
    assert report.outcomes == {"synced": 45}
    f1 = event(ledger, "F-1")
    assert f1.doc_number == "FL-F-1" and f1.batched and f1.qbo_id


def test_single_waiting_invoice_uses_single_create(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """One waiting invoice is sent with the single create (request id), not a batch."""
    ready_school(ledger)
    record_flights(ledger, 1)
    engine_for(ledger, gateway).run_pass(SCHOOL)
    assert gateway.calls == [("invoice", 1)]
    assert gateway.invoices[event(ledger, "F-1").qbo_id or ""].request_id == str(
        event(ledger, "F-1").id
    )


def test_outcomes_become_statuses_with_qbo_message(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """validation/inactive -> action_required with QBO's message; transient -> retrying;
    uncertain -> uncertain."""
    ready_school(ledger)
    record_flights(ledger, 5)
    gateway.then(event(ledger, "F-1").id, "validation")
    gateway.then(event(ledger, "F-2").id, "inactive")
    gateway.then(event(ledger, "F-3").id, "transient")
    gateway.then(event(ledger, "F-4").id, "uncertain")
    engine_for(ledger, gateway).run_pass(SCHOOL)
    f1, f2, f3, f4, f5 = (event(ledger, f"F-{i}") for i in range(1, 6))
    assert (f1.status, f1.reason_code) == (Status.ACTION_REQUIRED, "validation")
    assert "Amount is invalid" in f1.reason and "6000" in f1.reason
    assert (f2.status, f2.reason_code) == (Status.ACTION_REQUIRED, "inactive_mapping")
    assert f3.status == Status.RETRYING and "Service Unavailable" in f3.reason
    assert f4.status == Status.UNCERTAIN
    assert f5.status == Status.SYNCED


def test_auth_expired_mid_pass_stops_calls(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """After an auth_expired outcome no further call is made and the rest go auth_expired."""
    ready_school(ledger)
    record_flights(ledger, 25)
    gateway.auth_expires_after = 10
    report = engine_for(ledger, gateway, batch_size=10).run_pass(SCHOOL)
    assert gateway.calls == [("batch", 10), ("batch", 10)]
    counted = list(statuses(ledger).values())
    assert counted.count("synced") == 10
    assert counted.count("action_required") == 15
    reasons = {e.reason_code for e in ledger.iter_financial_events(SCHOOL) if e.reason_code}
    assert reasons == {"auth_expired"}
    assert report.stopped == "auth_expired"
    assert ledger.connection(SCHOOL).state == ConnectionState.EXPIRED
    engine_for(ledger, gateway).run_pass(SCHOOL)
    assert len(gateway.calls) == 2


def test_backoff_is_bounded_then_failed(
    ledger: FlightLedger, gateway: FakeAccountingGateway, clock: FixedClock
) -> None:
    """Transient failures retry after a backoff (not before) and end failed after 5 attempts."""
    ready_school(ledger)
    record_flights(ledger, 1)
    f1_id = event(ledger, "F-1").id
    gateway.then(f1_id, *["transient"] * 6)
    engine = engine_for(ledger, gateway, policy=RetryPolicy(max_attempts=5))
    engine.run_pass(SCHOOL)
    assert event(ledger, "F-1").status == Status.RETRYING
    engine.run_pass(SCHOOL)  # not due yet
    assert len(gateway.calls) == 1
    for _ in range(10):
        clock.advance(120)
        engine.run_pass(SCHOOL)
    f1 = event(ledger, "F-1")
    assert f1.status == Status.FAILED
    assert len(gateway.calls) == 5
    assert "gave up after 5 attempts" in f1.reason


def test_throttle_pauses_the_realm_without_spending_attempts(
    ledger: FlightLedger, gateway: FakeAccountingGateway, clock: FixedClock
) -> None:
    """A 429 pauses the school for its retry-after and never counts toward failed."""
    ready_school(ledger)
    record_flights(ledger, 1)
    gateway.then(event(ledger, "F-1").id, *["throttled"] * 7)
    engine = engine_for(ledger, gateway, policy=RetryPolicy(max_attempts=3))
    for _ in range(7):
        report = engine.run_pass(SCHOOL)
        assert engine.run_pass(SCHOOL).skipped == "paused"
        assert report.outcomes == {"retrying": 1}
        clock.advance(61)
    engine.run_pass(SCHOOL)
    assert event(ledger, "F-1").status == Status.SYNCED
    assert len(gateway.calls) == 8


def test_payment_waits_for_its_invoice_then_links(
    ledger: FlightLedger, gateway: FakeAccountingGateway, clock: FixedClock
) -> None:
    """A payment applying to an unsynced flight waits; once synced it is linked to its qbo id."""
    ready_school(ledger)
    record_flights(ledger, 1)
    record_payment(ledger, "P-1", applies_to="F-1")
    gateway.then(event(ledger, "F-1").id, "transient")
    engine = engine_for(ledger, gateway)
    engine.run_pass(SCHOOL)
    assert event(ledger, "P-1", "payment-received").status == Status.PENDING
    assert gateway.payments == {}
    clock.advance(120)
    engine.run_pass(SCHOOL)
    invoice_qbo_id = event(ledger, "F-1").qbo_id
    assert invoice_qbo_id is not None
    (sent,) = gateway.payments.values()
    assert sent.linked_invoice_id == invoice_qbo_id
    assert event(ledger, "P-1", "payment-received").status == Status.SYNCED


def test_payment_synced_in_the_same_pass_as_its_invoice(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """Invoices go first, so a payment for an invoice synced in this pass is sent linked."""
    ready_school(ledger)
    record_flights(ledger, 2)
    record_payment(ledger, "P-1", applies_to="F-2")
    engine_for(ledger, gateway).run_pass(SCHOOL)
    (sent,) = gateway.payments.values()
    assert sent.linked_invoice_id == event(ledger, "F-2").qbo_id


# --- recovery -------------------------------------------------------------------------------


def _crash_after_send(
    ledger: FlightLedger, gateway: FakeAccountingGateway, refs: list[str], *, batched: bool
) -> None:
    """Simulate a worker killed after QBO created the invoices but before recording it."""
    mappings = ledger.mappings(SCHOOL)
    events = [event(ledger, r) for r in refs]
    for e in events:
        e.start_push(
            request_id=str(e.id), doc_number=f"FL-{e.reference}", batched=batched, actor="w", at=T0
        )
    ledger.save(*events)
    drafts = [invoice_draft(e, mappings) for e in events]
    if batched:
        gateway.push_invoices(drafts)
    else:
        for d in drafts:
            gateway.push_invoice(d)
    gateway.calls.clear()


def test_syncing_single_create_is_replayed_with_the_same_request_id(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """A dead worker's single create: recovery -> uncertain -> replay returns the original."""
    ready_school(ledger)
    record_flights(ledger, 1)
    _crash_after_send(ledger, gateway, ["F-1"], batched=False)
    engine = engine_for(ledger, gateway)
    assert engine.recover(SCHOOL) == 1
    assert event(ledger, "F-1").status == Status.UNCERTAIN
    engine.run_pass(SCHOOL)
    assert event(ledger, "F-1").status == Status.SYNCED
    assert gateway.invoice_count == 1
    assert gateway.calls == [("invoice", 1)]


def test_syncing_batched_is_resolved_by_doc_number(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """A dead worker's batch: DocNumber lookup finds ours -> synced; nothing re-created."""
    ready_school(ledger)
    record_flights(ledger, 3)
    _crash_after_send(ledger, gateway, ["F-1", "F-2"], batched=True)
    engine = engine_for(ledger, gateway)
    assert engine.recover(SCHOOL) == 2
    engine.run_pass(SCHOOL)
    assert set(statuses(ledger).values()) == {"synced"}
    assert gateway.invoice_count == 3
    assert sorted(gateway.lookups) == ["FL-F-1", "FL-F-2"]
    assert ("invoice", 1) in gateway.calls  # F-3 alone, fresh


def test_batched_not_found_is_pushed_again_once(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """A batched push that never reached QBO: lookup finds nothing -> one new invoice."""
    ready_school(ledger)
    record_flights(ledger, 1)
    f1 = event(ledger, "F-1")
    f1.start_push(request_id=str(f1.id), doc_number="FL-F-1", batched=True, actor="w", at=T0)
    ledger.save(f1)
    engine = engine_for(ledger, gateway)
    engine.recover(SCHOOL)
    engine.run_pass(SCHOOL)
    assert gateway.calls == [("lookup", 1), ("invoice", 1)]
    assert event(ledger, "F-1").status == Status.SYNCED
    assert gateway.invoice_count == 1


def test_batched_found_with_different_contents_is_a_duplicate_doc_number(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """Same DocNumber, different customer/total in QBO -> action_required duplicate_doc_number."""
    ready_school(ledger)
    record_flights(ledger, 2)
    _crash_after_send(ledger, gateway, ["F-1", "F-2"], batched=True)
    stored = next(i for i in gateway.invoices.values() if i.doc_number == "FL-F-1")
    gateway.invoices[stored.qbo_id] = type(stored)(
        stored.qbo_id, stored.doc_number, "99", stored.total, None
    )
    engine = engine_for(ledger, gateway)
    engine.recover(SCHOOL)
    engine.run_pass(SCHOOL)
    f1 = event(ledger, "F-1")
    assert (f1.status, f1.reason_code) == (Status.ACTION_REQUIRED, "duplicate_doc_number")
    assert event(ledger, "F-2").status == Status.SYNCED
    assert gateway.invoice_count == 2


def test_uncertain_timeout_after_send_is_resolved_without_duplicate(
    ledger: FlightLedger, gateway: FakeAccountingGateway, clock: FixedClock
) -> None:
    """QBO created the invoice but the answer timed out: the replay settles it, one invoice."""
    ready_school(ledger)
    record_flights(ledger, 1)
    gateway.then(event(ledger, "F-1").id, "landed")
    engine = engine_for(ledger, gateway)
    engine.run_pass(SCHOOL)
    assert event(ledger, "F-1").status == Status.UNCERTAIN
    clock.advance(120)
    engine.run_pass(SCHOOL)
    assert event(ledger, "F-1").status == Status.SYNCED
    assert gateway.invoice_count == 1


def test_duplicate_doc_number_with_same_contents_counts_as_synced(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """6140 on a re-sent batch whose invoice is ours -> synced, never a second invoice."""
    ready_school(ledger)
    record_flights(ledger, 2)
    mappings = ledger.mappings(SCHOOL)
    gateway.push_invoices([invoice_draft(event(ledger, "F-1"), mappings)])
    gateway.calls.clear()
    engine_for(ledger, gateway).run_pass(SCHOOL)
    assert set(statuses(ledger).values()) == {"synced"}
    assert gateway.invoice_count == 2


def test_requeued_event_that_may_have_landed_is_never_batched(
    ledger: FlightLedger, gateway: FakeAccountingGateway
) -> None:
    """A pending event with earlier attempts is resolved alone (lookup/replay), not in a batch."""
    ready_school(ledger)
    record_flights(ledger, 3)
    _crash_after_send(ledger, gateway, ["F-1"], batched=True)
    engine = engine_for(ledger, gateway)
    engine.recover(SCHOOL)
    ledger.retry_failed(SCHOOL, [event(ledger, "F-1")], operator="op", scope="ids")
    assert event(ledger, "F-1").status == Status.PENDING
    engine.run_pass(SCHOOL)
    assert gateway.calls == [("lookup", 1), ("batch", 2)]
    assert gateway.invoice_count == 3
    assert set(statuses(ledger).values()) == {"synced"}


# --- a database failure is not a connection problem ------------------------------------------


@pytest.mark.parametrize("auto_customers", [False, True])
def test_a_store_failure_while_building_the_gateway_leaves_events_waiting(
    ledger: FlightLedger, gateway: FakeAccountingGateway, auto_customers: bool
) -> None:
    """The vault's database out of connections is tried again, never not_connected for good."""
    from domain.ports import StoreUnavailable

    if auto_customers:  # an unmapped student: the new-customer step builds the gateway first
        ready_school(ledger, students=())
        ledger.set_auto_customers(SCHOOL, True, operator="admin")
    else:
        ready_school(ledger)
    record_flights(ledger, 2)

    def unreachable(school: str) -> FakeAccountingGateway:
        raise StoreUnavailable("the vault database failed: too many clients already")

    engine = SyncEngine(ledger, FakeFinancialEventView(ledger), unreachable, rng=random.Random(7))
    with pytest.raises(StoreUnavailable):
        engine.run_pass(SCHOOL)
    assert set(statuses(ledger).values()) == {"pending"}
    if not auto_customers:
        report = engine_for(ledger, gateway).run_pass(SCHOOL)  # the database is back
        assert report.outcomes == {"synced": 2}
