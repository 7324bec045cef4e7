"""Mappings checked against QuickBooks' own lists (cached per realm), through the CLI and the
simulator over HTTP, on both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.persistence import parse_database_url
from adapters.qbo_lists import QboListStore
from adapters.qbo_simulator import QboSimulator, SimulatorConfig
from tests.helpers_qbo import Cli, cli_env, connect_via_cli

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
