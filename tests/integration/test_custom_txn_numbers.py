"""Custom transaction numbers off in the company (simulator Preferences): read at connect,
said in the checklist, and recovery rests on requestids alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.checklist import CUSTOM_NUMBERS_OFF
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import flight
from tests.helpers_qbo import Cli, cli_env, connect_via_cli, map_via_cli, record_via_cli

pytestmark = pytest.mark.timeout(120)
SCHOOL = "sunrise"


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator whose company numbers invoices itself (CustomTxnNumbers false)."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6)) as simulator:
        simulator.set_faults(custom_txn_numbers=False, replay_failures=True)
        yield simulator


def test_numbers_off_is_read_at_connect_and_shown_in_the_checklist(
    sqlite_url: str, sim: QboSimulator
) -> None:
    """connect reads Preferences; the checklist names the setting; turned on, the line goes."""
    cli = Cli(cli_env(sim, sqlite_url, SCHOOL))
    connect_via_cli(cli)
    failing = {i["item"] for i in cli.ok("checklist") if not i["ok"]}
    assert CUSTOM_NUMBERS_OFF.item in failing
    sim.set_faults(custom_txn_numbers=True)
    assert cli.ok("connection", "test")["ok"]
    assert CUSTOM_NUMBERS_OFF.item not in {i["item"] for i in cli.ok("checklist")}


def test_uncertain_invoice_is_recovered_by_its_request_id_alone(
    db_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """Created, answer lost; QBO's own numbers: the replay settles it, one invoice per flight."""
    cli = Cli(cli_env(sim, db_url, SCHOOL, timeout=0.5))
    connect_via_cli(cli)
    map_via_cli(cli, {"aircraft_rental": "1", "instructor_dual": "2"}, {"S-1": "1"})
    record_via_cli(cli, tmp_path / "f.jsonl", [flight(f"F-{n}", "S-1") for n in range(1, 4)])
    sim.set_faults(force_error={"preset": "html_504", "count": 1, "commit": True})
    summary = cli.ok("worker", "--until-idle", "--max-seconds", "90")
    assert summary["synced"] == 3, summary
    invoices = sim.invoices()
    assert len(invoices) == 3
    assert all(i["request_id"] for i in invoices)  # each sent alone with its requestid
    events = {r["reference"]: r for r in cli.ok("events")}
    assert sorted(r["doc_number"] for r in events.values()) == sorted(
        str(i["doc_number"]) for i in invoices
    )
    assert not any(str(i["doc_number"]).startswith("FL-") for i in invoices)
    failed = [
        ref for ref in events if any(h["type"] == "PushFailed" for h in cli.ok("history", ref))
    ]
    assert len(failed) == 1  # the one whose answer was lost, settled by the replay
