"""QuickBooks outcomes in their real-world shapes: 401 code 100 (XML), invalid_client on
refresh, and a 6140 that costs one DocNumber lookup."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from adapters.views import open_view
from domain.financial_event import Status
from domain.ports import FixedClock, OutcomeKind, ReasonCode
from domain.records import RecordKind, parse_line
from qbo_simulator import QboSimulator, SimulatorConfig
from services.push_pass import SyncEngine
from tests.factories import flight, jsonl
from tests.helpers_qbo import SCHOOL, Rig, draft, make_rig
from workers.projector import Projector
from workers.qbo import connection_status, gateway_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator with a 0.6-second QBO minute."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6, max_sleep_seconds=3)) as simulator:
        yield simulator


@pytest.fixture
def rig(db_url: str, sim: QboSimulator, clock: FixedClock) -> Iterator[Rig]:
    """A connected school."""
    made = make_rig(db_url, sim, clock)
    yield made
    made.ledger.close()


def _refreshes(rig: Rig) -> int:
    return sum(1 for e in rig.ledger.history(SCHOOL, "connection") if e.type == "TokensRefreshed")


def test_401_code_100_xml_gets_one_refresh_and_a_retry(rig: Rig, sim: QboSimulator) -> None:
    """QBO's XML 'General Authentication Error' once: refresh, retry, synced; one invoice."""
    before = _refreshes(rig)
    sim.set_faults(force_error={"preset": "auth_100_xml", "count": 1})
    outcome = rig.gateway().push_invoice(draft(1))
    assert outcome.kind == OutcomeKind.SYNCED, outcome
    assert _refreshes(rig) == before + 1
    assert [i["doc_number"] for i in sim.invoices()] == ["FL-1"]


def test_a_second_401_after_the_refresh_is_auth_failed(rig: Rig, sim: QboSimulator) -> None:
    """401/100 again after the one refresh: auth_failed with QBO's words, nothing created."""
    sim.set_faults(force_error={"preset": "auth_100_xml", "count": 2})
    outcome = rig.gateway().push_invoice(draft(1))
    assert (outcome.kind, outcome.reason_code) == (
        OutcomeKind.ACTION_REQUIRED,
        ReasonCode.AUTH_FAILED,
    )
    assert "General Authentication Error" in outcome.message
    assert sim.invoices() == []


def test_invalid_client_on_refresh_is_said_in_plain_words_and_shown(
    rig: Rig, sim: QboSimulator
) -> None:
    """A wrong client secret: the refresh's invalid_client names the app keys; status shows it."""
    wrong = replace(rig.service.settings, client_secret="not-the-secret")
    gateway = gateway_for(rig.ledger, rig.vault, wrong, SCHOOL)
    sim.set_faults(expire_access_tokens_now=True)
    outcome = gateway.push_invoice(draft(1))
    assert outcome.reason_code == ReasonCode.AUTH_FAILED
    assert "rejected this app's client id or client secret" in outcome.message
    status = connection_status(rig.ledger, SCHOOL, rig.clock.now())
    assert "rejected this app's client id or client secret" in (status["last_error"] or "")
    assert "not-the-secret" not in str(status)


def _requests(sim: QboSimulator) -> int:
    return sum(int(r["requests"]) for r in sim.stats_snapshot()["realms"].values())


def test_a_6140_costs_one_doc_number_lookup(rig: Rig, db_url: str, sim: QboSimulator) -> None:
    """Our DocNumber taken by a different invoice: one lookup, duplicate_doc_number, no create."""
    ledger = rig.ledger
    ledger.map_charge(SCHOOL, "aircraft_rental", "1", operator="ana")
    ledger.map_charge(SCHOOL, "instructor_dual", "2", operator="ana")
    ledger.map_student(SCHOOL, "S-1", "1", operator="ana")
    ledger.set_defaults(SCHOOL, operator="ana", term_id="3", memo="Thanks", income_account_id="79")
    squatter = replace(draft(9, customer="2"), doc_number="FL-F-1", request_id="someone-else")
    assert rig.gateway().push_invoice(squatter).kind == OutcomeKind.SYNCED
    ledger.record_batch(
        SCHOOL, [parse_line(RecordKind.FLIGHT_ENDED, jsonl([flight("F-1", "S-1")]))], actor="ops"
    )
    view = open_view(db_url)
    try:
        Projector(ledger, view).catch_up()
        before = _requests(sim)
        SyncEngine(ledger, view, lambda _school: rig.gateway()).run_pass(SCHOOL)
        calls = _requests(sim) - before
    finally:
        view.close()
    event = ledger.find(SCHOOL, "F-1")
    assert (event.status, event.reason_code) == (Status.ACTION_REQUIRED, "duplicate_doc_number")
    assert "different contents" in event.reason
    assert calls == 2  # the create answered 6140, then one DocNumber query
    assert len(sim.invoices()) == 1
