"""A 2500 "Invalid Reference Id" names the charge code behind QBO's element (JSON and XML faults),
through the real client and simulator, and `events --group-by reason` says it in plain words."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from adapters.persistence import parse_database_url
from adapters.qbo_lists import QboListStore
from adapters.views import open_view
from domain.financial_event import Status
from domain.ports import FixedClock
from domain.records import RecordKind, parse_line
from qbo_simulator import QboSimulator, SimulatorConfig
from services.new_customers import CachedCustomers
from services.push_pass import SyncEngine
from tests.factories import flight, jsonl
from tests.helpers_qbo import SCHOOL, Rig, make_rig, sim_env
from workers.cli import _register_commands, app
from workers.logging import configure_logging
from workers.projector import Projector
from workers.qbo_lists import QboListService

pytestmark = pytest.mark.timeout(60)
configure_logging()
_register_commands()


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


@pytest.mark.parametrize("envelope", ["application", "xml"])
def test_2500_on_a_line_names_the_charge_code_in_group_by_reason(
    rig: Rig, db_url: str, sim: QboSimulator, envelope: str
) -> None:
    """QBO names only Line.SalesItemLineDetail.ItemRef: the cached lists tell item 999 is the
    unknown one, so the event and its reason group name charge code instructor_dual."""
    ledger = rig.ledger
    ledger.map_charge(SCHOOL, "aircraft_rental", "1", operator="ana")
    ledger.map_charge(SCHOOL, "instructor_dual", "999", operator="ana")
    ledger.map_student(SCHOOL, "S-1", "1", operator="ana")
    # term 77 is unknown too: only the element (ItemRef) keeps it out of the message
    ledger.set_defaults(SCHOOL, operator="ana", term_id="77", memo="Thanks", income_account_id="79")
    store = QboListStore(parse_database_url(db_url))
    QboListService(ledger, rig.service, store).refresh(SCHOOL)  # item 999 is not in the lists
    sim.set_faults(
        force_error={
            "http_status": 400,
            "code": "2500",
            "message": "Invalid Reference Id",
            "detail": "Invalid Reference Id : Something you're trying to use is not there",
            "element": "Line.SalesItemLineDetail.ItemRef",
            "envelope": envelope,
        }
    )
    ledger.record_batch(
        SCHOOL, [parse_line(RecordKind.FLIGHT_ENDED, jsonl([flight("F-1", "S-1")]))], actor="ops"
    )
    view = open_view(db_url)
    try:
        Projector(ledger, view).catch_up()
        engine = SyncEngine(ledger, view, lambda _school: rig.gateway())
        engine.cached_lists = CachedCustomers(ledger, store).lists
        engine.run_pass(SCHOOL)
    finally:
        view.close()
    event = ledger.find(SCHOOL, "F-1")
    assert (event.status, event.reason_code) == (Status.ACTION_REQUIRED, "invalid_reference")
    words = "Charge code instructor_dual is mapped to QuickBooks item 999, which does not exist"
    assert words in event.reason
    assert "Invalid Reference Id" in event.reason  # QBO's own words stay
    assert "The default term" not in event.reason
    env = sim_env(sim)
    result = CliRunner().invoke(
        app,
        ["--db", db_url, "--school", SCHOOL, "--json", "events", "--group-by", "reason"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    (group,) = json.loads(result.stdout)
    assert (group["reason_code"], group["example"]) == ("invalid_reference", "F-1")
    assert group["fix"] == (
        "Charge code instructor_dual points at a QuickBooks object that does not exist: map"
        " charge code instructor_dual to an existing QuickBooks item, then press Retry Failed"
    )
    assert "ItemRef" not in group["fix"]
    rows = CliRunner().invoke(
        app, ["--db", db_url, "--school", SCHOOL, "--json", "events"], env=env
    )
    (row,) = json.loads(rows.stdout)
    assert words in row["reason"]
    assert sim.invoices() == []
