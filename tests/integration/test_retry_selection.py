"""Retry Failed selects the same events from the same state through the CLI, the dashboard and
the HTTP API (one selection module, domain/retry.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from adapters.views import open_view
from adapters.web.app import create_app
from adapters.web.auth import local_operator
from domain.application import FlightLedger
from domain.financial_event import Status
from domain.ports import FixedClock
from domain.retry import GROUPS
from services.push_pass import SyncEngine
from tests.api_support import api_client
from tests.fakes import FakeAccountingGateway, FakeFinancialEventView, connect, map_everything
from tests.fakes import record_flights as record
from tests.helpers_qbo import Cli
from workers.bootstrap import open_ledger
from workers.projector import Projector

ENTRY_POINTS = ("cli", "dashboard", "api")
CHECKED_GROUPS = ("failed", "uncertain", "validation", "missing_mapping", "inactive_mapping")


@pytest.fixture
def ledger(db_url: str, clock: FixedClock) -> Iterator[FlightLedger]:
    """The log on SQLite or PostgreSQL."""
    app = open_ledger(db_url, clock=clock)
    yield app
    app.close()


def waiting_state(ledger: FlightLedger, school: str) -> None:
    """One school with events failed, uncertain, validation, missing and inactive mapping,
    each of whose causes is fixed (so selection alone decides what is requeued)."""
    connect(ledger, school)
    map_everything(ledger, school, students=("S-7",))
    ids = record(ledger, 4, school=school, start=2)  # F-2 .. F-5
    record(ledger, 1, school=school, student="S-9", start=6)  # F-6: unmapped student
    gateway = FakeAccountingGateway()
    gateway.then(ledger.find(school, ids[0]).id, "validation")
    gateway.then(ledger.find(school, ids[1]).id, "inactive")
    gateway.then(ledger.find(school, ids[2]).id, *["transient"] * 8)
    engine = SyncEngine(
        ledger, FakeFinancialEventView(ledger), lambda s: gateway, rng=random.Random(1)
    )
    clock = ledger.clock
    assert isinstance(clock, FixedClock)
    for _ in range(8):  # transient failures back off: move the clock past each retry
        engine.run_pass(school)
        clock.advance(3600)
    (uncertain,) = record(ledger, 1, school=school, start=1)  # F-1: answered uncertain
    gateway.then(ledger.find(school, uncertain).id, "uncertain")
    engine.run_pass(school)
    ledger.map_student(school, "S-9", "9", operator="setup")
    statuses = {e.reference: e.status for e in ledger.iter_financial_events(school)}
    assert statuses["F-1"] == Status.UNCERTAIN
    assert statuses["F-4"] == Status.FAILED
    assert statuses["F-5"] == Status.SYNCED
    assert {statuses["F-2"], statuses["F-3"], statuses["F-6"]} == {Status.ACTION_REQUIRED}


def requeued(ledger: FlightLedger, school: str) -> set[str]:
    """References whose last event is the operator's RetryRequested."""
    return {
        e.reference
        for e in ledger.iter_financial_events(school)
        if ledger.history(school, e.reference)[-1].type == "RetryRequested"
    }


def press_cli(db_url: str, school: str, group: str) -> None:
    """`flightledger retry-failed --reason GROUP` in process."""
    cli = Cli({"FLIGHTLEDGER_DB": db_url})
    code, answer = cli("retry-failed", "--reason", group, school=school)
    assert code in (0, 1), answer


def press_dashboard(ledger: FlightLedger, db_url: str, school: str, group: str) -> None:
    """The dashboard's Retry Failed button of the group."""
    view = open_view(db_url)
    projector = Projector(ledger, view)
    app = create_app(
        ledger=ledger,
        view=view,
        refresh_view=projector.catch_up,
        session_key=b"k" * 32,
        local_user=local_operator(school),
    )
    with TestClient(app, follow_redirects=False) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
        assert csrf is not None
        answer = client.post("/retry-failed", data={"csrf": csrf.group(1), "reason": group})
        assert answer.status_code == 303, answer.text
    view.close()


def press_api(ledger: FlightLedger, db_url: str, school: str, group: str) -> None:
    """POST /api/v1/retry-failed with a billing:retry key."""
    with api_client(ledger, db_url, school, ["billing:retry"]) as (client, headers):
        answer = client.post("/api/v1/retry-failed", json={"reason": group}, headers=headers)
        assert answer.status_code in (200, 409), answer.text


@pytest.mark.parametrize("group", CHECKED_GROUPS)
def test_every_entry_point_selects_the_same_events(
    ledger: FlightLedger, db_url: str, group: str
) -> None:
    """The same state in three schools; each entry point's press requeues the same flights."""
    assert group in GROUPS
    presses: dict[str, Callable[[str], None]] = {
        "cli": lambda school: press_cli(db_url, school, group),
        "dashboard": lambda school: press_dashboard(ledger, db_url, school, group),
        "api": lambda school: press_api(ledger, db_url, school, group),
    }
    chosen: dict[str, set[str]] = {}
    for entry in ENTRY_POINTS:
        waiting_state(ledger, entry)
        presses[entry](entry)
        chosen[entry] = requeued(ledger, entry)
    assert chosen["cli"], f"group {group} selected nothing: the state does not exercise it"
    assert all(chosen[e] == chosen["cli"] for e in ENTRY_POINTS)
