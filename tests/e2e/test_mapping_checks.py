"""Mappings checked against QuickBooks' own lists (cached per realm), through the CLI and the
simulator over HTTP, on both backends."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.persistence import parse_database_url
from adapters.qbo_lists import QboListStore
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.api_support import api_client
from tests.factories import flight, jsonl, payment
from tests.helpers_qbo import (
    Cli,
    assert_one_invoice_each,
    cli_env,
    connect_via_cli,
    record_via_cli,
    spawn_worker,
)
from workers.bootstrap import open_ledger
from workers.qbo import connection_service
from workers.qbo_lists import QboListService

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A fresh simulator in this process, reached over loopback HTTP."""
    with QboSimulator(SimulatorConfig()) as simulator:
        yield simulator


@pytest.fixture
def cli(db_url: str, sim: QboSimulator) -> Cli:
    """The in-process CLI on a fresh database (both backends), pointed at the simulator."""
    return Cli(cli_env(sim, db_url, "sunrise"))


def _queries(sim: QboSimulator) -> int:
    stats = sim.stats_snapshot()["realms"]
    return sum(int(r.get("requests", 0)) for r in stats.values())


def test_refresh_caches_every_list_per_realm(cli: Cli, sim: QboSimulator, db_url: str) -> None:
    """`mappings refresh` reads all five lists (inactive ones too) and stores them per realm."""
    connect_via_cli(cli)
    done = cli.ok("mappings", "refresh")
    assert done["counts"] == {
        "Item": 5, "Customer": 21, "Account": 3, "Term": 2, "PaymentMethod": 2,
    }  # fmt: skip
    stored = QboListStore(parse_database_url(db_url)).get("sunrise", done["realm"])
    assert stored is not None
    old = stored.get("Item", "5")
    assert old is not None and (old.name, old.active) == ("Old rental", False)
    checking = stored.get("Account", "35")
    assert checking is not None and checking.type == "Bank"
    shown = cli.ok("mappings", "quickbooks", "--entity", "Item")["objects"]
    assert [(o["id"], o["active"]) for o in shown][:2] == [("1", True), ("3", True)]


def test_set_refuses_nonexistent_and_inactive_ids(cli: Cli, sim: QboSimulator) -> None:
    """A nonexistent id is refused naming it; an inactive one unless --allow-inactive (flagged)."""
    connect_via_cli(cli)
    missing = cli.full("mappings", "set", "charge", "rental", "--item", "999")
    assert missing.code == 1
    assert "item 999 does not exist" in missing.data["error"]
    inactive = cli.full("mappings", "set", "charge", "old_rental", "--item", "5")
    assert inactive.code == 1
    assert "QuickBooks item 5 (Old rental) is inactive" in inactive.data["error"]
    assert "--allow-inactive" in inactive.data["error"]
    assert cli.full("mappings", "set", "student", "S-9", "--customer", "21").code == 1
    assert cli.full("mappings", "set", "payment-type", "card", "--deposit-account", "7").code == 1
    assert cli.full("mappings", "set", "defaults", "--term", "2").code == 1
    assert cli.ok("mappings", "list") == []  # nothing refused was recorded

    flagged = cli.ok("mappings", "set", "charge", "old_rental", "--item", "5", "--allow-inactive")
    assert flagged["ok"] and "inactive" in flagged["warnings"][0]
    assert cli.ok("mappings", "set", "charge", "rental", "--item", "1")["warnings"] == []
    listed = {r["key"]: r for r in cli.ok("mappings", "list")}
    assert listed["old_rental"]["qbo_active"] is False
    assert listed["rental"]["qbo_name"] == "Aircraft rental"


def test_lists_are_read_once_not_per_mapping(cli: Cli, sim: QboSimulator) -> None:
    """Setting many mappings reads QuickBooks' lists once (metered reads count)."""
    connect_via_cli(cli)
    before = _queries(sim)
    for student in range(1, 8):
        cli.ok("mappings", "set", "student", f"S-{student}", "--customer", str(student))
    cli.ok("mappings", "set", "charge", "rental", "--item", "1")
    assert _queries(sim) - before == 5  # one page of each of the five lists


def test_unconnected_set_is_recorded_unchecked(cli: Cli) -> None:
    """Without a connection the mapping is recorded and the answer says it was not checked."""
    done = cli.ok("mappings", "set", "charge", "rental", "--item", "999")
    assert done["checked"] is False
    assert "not checked against QuickBooks" in done["warnings"][0]


def _wait(cli: Cli, done: Callable[[list[dict[str, Any]]], bool], seconds: float = 90) -> Any:
    """Poll `events` until done(rows) (the worker runs in its own process)."""
    deadline = time.monotonic() + seconds
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = cli.ok("events")
        if done(rows):
            return rows
        time.sleep(0.3)
    raise AssertionError(f"timed out; events: {[(r['reference'], r['status']) for r in rows]}")


def api_press_is_blocked(cli: Cli, db_url: str) -> str:
    """POST /api/v1/retry-failed for inactive_mapping, with the list service `serve` wires:
    it must be refused (409) as the CLI is, QuickBooks' lists read again; the reason given."""
    ledger = open_ledger(db_url)
    service = QboListService(
        ledger,
        connection_service(ledger, db_url, cli.env),
        QboListStore(parse_database_url(db_url)),
    )
    try:
        with api_client(ledger, db_url, "sunrise", ["billing:retry"], qbo_lists=service) as (
            client,
            headers,
        ):
            answer = client.post(
                "/api/v1/retry-failed", json={"reason": "inactive_mapping"}, headers=headers
            )
    finally:
        ledger.close()
    assert answer.status_code == 409, answer.text
    assert service.reads == 1  # read again once for the press
    error = answer.json()["error"]
    assert error["code"] == "blocked"
    return str(error["message"])


def test_inactive_item_story_against_a_running_worker(
    cli: Cli, sim: QboSimulator, tmp_path: Path, db_url: str
) -> None:
    """Mapped to inactive item 5: Retry Failed (CLI and API) refuses naming it until QuickBooks
    reactivates it; an inactive payment type of ours still syncs; one invoice per flight."""
    connect_via_cli(cli)
    cli.ok("mappings", "set", "charge", "aircraft_rental", "--item", "1")
    cli.ok("mappings", "set", "charge", "old_rental", "--item", "5", "--allow-inactive")
    cli.ok("mappings", "set", "student", "S-7", "--customer", "7")
    cli.ok(
        "mappings", "set", "defaults", "--term", "3", "--memo", "Thanks", "--income-account", "79"
    )
    cli.ok("mappings", "set", "payment-type", "check", "--deposit-account", "35", "--inactive")
    assert [r["key"] for r in cli.ok("mappings", "list") if r["kind"] == "payment_type"] == []
    assert "check" in [r["key"] for r in cli.ok("mappings", "list", "--include-inactive")]
    old = {"code": "old_rental", "quantity": "1.0", "rate": "150.00"}
    record_via_cli(cli, tmp_path / "old.jsonl", [flight(f"O-{i}", charges=[old]) for i in range(2)])
    (tmp_path / "p.jsonl").write_text(jsonl([payment("P-1", payment_type="check")]))
    cli.ok("record", "payment-received", str(tmp_path / "p.jsonl"))
    problems = cli.ok("mappings", "check")["missing"]
    assert [(p["key"], p["state"]) for p in problems] == [("old_rental", "inactive")]
    assert "QuickBooks item 5 (Old rental), which is inactive" in problems[0]["detail"]

    worker = spawn_worker(cli.env, log_path=tmp_path / "worker.log")
    try:
        rows = _wait(
            cli,
            lambda rs: (
                {r["reference"]: r["status"] for r in rs}
                == {"O-0": "action_required", "O-1": "action_required", "P-1": "synced"}
            ),
        )
        assert {r["reason_code"] for r in rows if r["reference"].startswith("O-")} == {
            "inactive_mapping"
        }
        refused = cli.full("retry-failed", "--reason", "inactive_mapping")
        assert refused.code == 1
        why = refused.data["blocked"][0]["why"]
        assert "Charge code old_rental is mapped to QuickBooks item 5 (Old rental)" in why
        assert "inactive" in why and "Line." not in why
        assert why in api_press_is_blocked(cli, db_url)
        requests.post(
            f"{sim.url}/_sim/entity", json={"entity": "Item", "id": "5", "active": True}, timeout=5
        ).raise_for_status()
        assert cli.ok("retry-failed", "--reason", "inactive_mapping")["requeued"] == 2
        _wait(cli, lambda rs: {r["status"] for r in rs} == {"synced"})
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert_one_invoice_each(sim.invoices(), {"FL-O-0", "FL-O-1"})
    assert len(sim.payments()) == 1
