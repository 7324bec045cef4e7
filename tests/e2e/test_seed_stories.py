"""Issue 5's two seed stories through the CLI, against the simulator over HTTP, on both backends.

1. The refresh token is revoked mid-day: Reconnect pill, auth_expired entries, Retry Failed
   refused until the school reconnects, then every flight synced exactly once.
2. A missing charge-code mapping and an item made inactive in QuickBooks: missing_mapping naming
   the key, inactive_mapping with QuickBooks's own message; map / remap, Retry Failed, all synced.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import flight
from tests.helpers_qbo import (
    CHARGE_ITEMS,
    Cli,
    assert_one_invoice_each,
    cli_env,
    connect_via_cli,
    map_via_cli,
    record_via_cli,
)

pytestmark = pytest.mark.timeout(240)
STUDENTS = {"S-1": "1", "S-2": "2", "S-3": "3"}
FUEL = {"code": "fuel_surcharge", "quantity": "1.2", "rate": "12.00"}
RENTAL = {"code": "aircraft_rental", "quantity": "1.2", "rate": "165.00"}
DUAL = {"code": "instructor_dual", "quantity": "1.2", "rate": "60.00"}


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A fresh simulator in this process, reached over loopback HTTP."""
    with QboSimulator(SimulatorConfig()) as simulator:
        simulator.set_faults(replay_failures=True)  # a repeated requestid replays faults too
        yield simulator


@pytest.fixture
def cli(db_url: str, sim: QboSimulator) -> Cli:
    """The in-process CLI on a fresh database (both backends), pointed at the simulator."""
    return Cli(cli_env(sim, db_url, "sunrise"))


def _flights(prefix: str, n: int, **overrides: Any) -> list[dict[str, Any]]:
    students = list(STUDENTS)
    return [flight(f"{prefix}-{i}", students[i % len(students)], **overrides) for i in range(n)]


def _worker(cli: Cli) -> dict[str, Any]:
    summary: dict[str, Any] = cli.ok("worker", "--until-idle", "--max-seconds", "90")
    return summary


def _reasons(cli: Cli) -> dict[str, dict[str, Any]]:
    return {g["reason_code"]: g for g in cli.ok("events", "--group-by", "reason")}


def test_story_1_revoked_refresh_token_mid_day(cli: Cli, sim: QboSimulator, tmp_path: Path) -> None:
    """Revoked mid-day -> Reconnect + auth_expired, retry refused; reconnect -> all synced once."""
    connect_via_cli(cli)
    assert cli.ok("connection", "status")["pill"] == "Connected"
    map_via_cli(cli, CHARGE_ITEMS, STUDENTS)
    morning = _flights("AM", 6)
    record_via_cli(cli, tmp_path / "morning.jsonl", morning)
    summary = _worker(cli)
    assert (summary["synced"], summary["action_required"]) == (6, 0)

    sim.set_faults(revoke_refresh_tokens=True, expire_access_tokens_now=True)
    afternoon = _flights("PM", 5)
    record_via_cli(cli, tmp_path / "afternoon.jsonl", afternoon)
    summary = _worker(cli)
    assert (summary["synced"], summary["action_required"], summary["pending"]) == (6, 5, 0)

    status = cli.ok("connection", "status")
    assert (status["pill"], status["tone"]) == ("Reconnect", "red")
    waiting = cli.ok("events", "--status", "action_required")
    assert sorted(e["reference"] for e in waiting) == sorted(f["flight_id"] for f in afternoon)
    assert {e["reason_code"] for e in waiting} == {"auth_expired"}
    groups = _reasons(cli)
    assert groups["auth_expired"]["count"] == 5
    assert groups["auth_expired"]["fix"].startswith("Reconnect QuickBooks")

    refused = cli.full("retry-failed", "--reason", "auth_expired")
    assert refused.code == 1
    assert refused.data["requeued"] == 0
    assert "Reconnect" in refused.data["blocked"][0]["why"]

    connect_via_cli(cli)
    status = cli.ok("connection", "status")
    assert (status["pill"], status["tone"]) == ("Connected", "green")
    done = cli.ok("retry-failed", "--reason", "auth_expired", "--operator", "ana")
    assert (done["requeued"], done["blocked"]) == (5, [])
    summary = _worker(cli)
    assert (summary["synced"], summary["action_required"]) == (11, 0)

    everything = cli.ok("events")
    assert {e["status"] for e in everything} == {"synced"}
    expected = {f"FL-{f['flight_id']}" for f in morning + afternoon}
    assert_one_invoice_each(sim.invoices(), expected)
    assert {e["doc_number"] for e in everything} == expected


def test_story_2_missing_and_inactive_mappings(cli: Cli, sim: QboSimulator, tmp_path: Path) -> None:
    """Unmapped code -> missing_mapping naming it; inactive item -> inactive_mapping (610)."""
    connect_via_cli(cli)
    map_via_cli(cli, {"aircraft_rental": "1", "fuel_surcharge": "3"}, STUDENTS)
    sim.set_faults(inactive_items=["3"])  # fuel surcharge item made inactive in QuickBooks
    plain = _flights("A", 3, charges=[RENTAL])
    dual = _flights("D", 4, charges=[RENTAL, DUAL])
    fuel = _flights("U", 3, charges=[RENTAL, FUEL])
    record_via_cli(cli, tmp_path / "flights.jsonl", plain + dual + fuel)

    missing = cli.ok("mappings", "check")["missing"]
    assert [(m["kind"], m["key"]) for m in missing] == [("charge", "instructor_dual")]

    summary = _worker(cli)
    assert (summary["synced"], summary["action_required"]) == (3, 7)
    groups = _reasons(cli)
    assert groups["missing_mapping"]["count"] == 4
    assert "charge code instructor_dual" in groups["missing_mapping"]["fix"]
    assert groups["inactive_mapping"]["count"] == 3
    missing_rows = cli.ok("events", "--reason", "missing_mapping")
    assert sorted(e["reference"] for e in missing_rows) == sorted(f["flight_id"] for f in dual)
    assert all("charge:instructor_dual" in e["reason"] for e in missing_rows)
    inactive_rows = cli.ok("events", "--reason", "inactive_mapping")
    assert sorted(e["reference"] for e in inactive_rows) == sorted(f["flight_id"] for f in fuel)
    assert all("610" in e["reason"] for e in inactive_rows), inactive_rows[0]["reason"]
    assert all("inactive" in e["reason"].lower() for e in inactive_rows)

    refused = cli.full("retry-failed", "--reason", "missing_mapping")
    assert refused.code == 1
    assert "charge:instructor_dual" in refused.data["blocked"][0]["why"]
    assert "charge:instructor_dual" in refused.stderr

    cli.ok("mappings", "set", "charge", "instructor_dual", "--item", "2")
    cli.ok("mappings", "set", "charge", "fuel_surcharge", "--item", "4")  # an active item
    assert cli.ok("mappings", "check")["missing"] == []
    done = cli.ok("retry-failed", "--reason", "missing_mapping", "--operator", "ana")
    assert (done["requeued"], done["blocked"]) == (4, [])
    done = cli.ok("retry-failed", "--reason", "inactive_mapping", "--operator", "ana")
    assert (done["requeued"], done["blocked"]) == (3, [])
    summary = _worker(cli)
    assert (summary["synced"], summary["action_required"]) == (10, 0)

    expected = {f"FL-{f['flight_id']}" for f in plain + dual + fuel}
    assert_one_invoice_each(sim.invoices(), expected)
    fuel_lines = [i for i in sim.invoices() if i["doc_number"].startswith("FL-U-")]
    assert len(fuel_lines) == 3


def test_inactive_mapping_names_the_charge_code(
    sqlite_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """An item made inactive in QBO: the Action Required group names the charge code to remap."""
    cli = Cli(cli_env(sim, sqlite_url, "sunrise"))
    connect_via_cli(cli)
    map_via_cli(cli, {"aircraft_rental": "1", "fuel_surcharge": "3"}, STUDENTS)
    sim.set_faults(inactive_items=["3"])
    record_via_cli(cli, tmp_path / "flights.jsonl", _flights("U", 2, charges=[RENTAL, FUEL]))
    _worker(cli)
    group = _reasons(cli)["inactive_mapping"]
    assert "fuel_surcharge" in group["fix"] + " ".join(group.get("missing", []))
