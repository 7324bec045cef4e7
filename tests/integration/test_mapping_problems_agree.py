"""`mappings check` and the settings page's "Needs a mapping" list the same keys with the same
counts from the same state (one use case, services.mappings.mapping_problems), on SQLite and
PostgreSQL."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from adapters.views import open_view
from adapters.web.app import create_app
from adapters.web.auth import local_operator
from domain.application import FlightLedger
from tests.fakes import map_everything
from tests.fakes import record_flights as record
from tests.helpers_qbo import Cli
from workers.projector import Projector

SCHOOL = "alpha"
ROW = re.compile(r'<tr data-key="([^"]+)">.*?<td class="num">(\d+)</td>', re.S)


def test_mappings_check_and_the_settings_page_agree(ledger: FlightLedger, db_url: str) -> None:
    """An unmapped charge code used by three flights and an unmapped student by one: both
    entry points name exactly those, with those counts; with auto-customers on neither lists
    the student (the worker maps it); once mapped, neither lists anything."""
    map_everything(ledger, SCHOOL, students=("S-7",), skip_charge="instructor_dual")
    record(ledger, 2, school=SCHOOL)
    record(ledger, 1, school=SCHOOL, student="S-9", start=3)
    cli = Cli({"FLIGHTLEDGER_DB": db_url})
    view = open_view(db_url)
    app = create_app(
        ledger=ledger,
        view=view,
        refresh_view=Projector(ledger, view).catch_up,
        session_key=b"k" * 32,
        local_user=local_operator(SCHOOL),
    )

    def from_cli() -> set[tuple[str, int]]:
        found = cli.ok("mappings", "check", school=SCHOOL)["missing"]
        return {(f"{m['kind']}:{m['key']}", m["count"]) for m in found}

    def from_page(client: TestClient) -> set[tuple[str, int]]:
        page = client.get("/settings")
        assert page.status_code == 200, page.text
        section = page.text.split('id="unmapped"', 1)
        return {(key, int(n)) for key, n in ROW.findall(section[1])} if len(section) > 1 else set()

    try:
        with TestClient(app) as client:
            expected = {("charge:instructor_dual", 3), ("student:S-9", 1)}
            assert from_cli() == expected
            assert from_page(client) == expected
            ledger.set_auto_customers(SCHOOL, True, operator="ana")  # S-9 is the worker's now
            assert from_cli() == {("charge:instructor_dual", 3)}
            assert from_page(client) == {("charge:instructor_dual", 3)}
            ledger.map_charge(SCHOOL, "instructor_dual", "2", operator="ana")
            ledger.map_student(SCHOOL, "S-9", "9", operator="ana")
            assert from_cli() == set()
            assert from_page(client) == set()
    finally:
        view.close()
