"""The real executable: worker, retry-failed, dismiss and checklist against the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain.ports import FixedClock
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import flight, jsonl
from tests.helpers_qbo import SCHOOL, make_rig, sim_env

EXE = str(Path(sys.executable).with_name("flightledger"))
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator in this process, reached over HTTP by the subprocesses."""
    with QboSimulator(SimulatorConfig()) as simulator:
        simulator.set_faults(replay_failures=True)  # a repeated requestid replays faults too
        yield simulator


def run(env: dict[str, str], *args: str) -> tuple[int, Any, str]:
    """Run the console script with --json; (exit code, parsed stdout, stderr)."""
    done = subprocess.run(
        [EXE, "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    assert "Traceback" not in done.stderr + done.stdout
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, done.stderr


def test_worker_retry_dismiss_and_checklist(
    sqlite_url: str,
    sim: QboSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unmapped code -> Action Required; retry refused until mapped; then all synced, once."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    rig = make_rig(
        sqlite_url, sim, FixedClock(datetime.now(UTC))
    )  # subprocesses: real time  # connected through the simulator's OAuth flow
    rig.ledger.close()
    env = {
        **sim_env(sim),
        "FLIGHTLEDGER_DB": sqlite_url,
        "FLIGHTLEDGER_SCHOOL": SCHOOL,
        "OAUTHLIB_INSECURE_TRANSPORT": "1",
    }
    code, checklist, _ = run(env, "checklist")
    worker_line = next(i for i in checklist if i["item"] == "Worker seen recently")
    assert worker_line["fix"] == "no worker has run: start `flightledger worker`"
    for args in (
        ["charge", "aircraft_rental", "--item", "1"],
        ["student", "S-7", "--customer", "7"],
        ["defaults", "--term", "3", "--memo", "Thanks", "--income-account", "79"],
    ):
        assert run(env, "mappings", "set", *args)[0] == 0
    flights = tmp_path / "flights.jsonl"
    flights.write_text(jsonl([flight(f"F-{i}") for i in range(4)]))
    assert run(env, "record", "flight-ended", str(flights))[0] == 0

    code, summary, _ = run(env, "worker", "--until-idle", "--max-seconds", "60")
    assert code == 0
    assert (summary["action_required"], summary["synced"]) == (4, 0)
    assert set(summary) >= {"synced", "failed", "retrying", "uncertain", "pending", "passes"}

    code, refused, stderr = run(env, "retry-failed", "--reason", "missing_mapping")
    assert code == 1
    assert "charge:instructor_dual" in refused["blocked"][0]["why"]
    assert "charge:instructor_dual" in stderr

    assert run(env, "dismiss", "F-3", "--note", "free trial flight", "--operator", "ana")[1] == {
        "ok": True
    }
    assert run(env, "mappings", "set", "charge", "instructor_dual", "--item", "2")[0] == 0
    code, done, _ = run(env, "retry-failed", "--reason", "missing_mapping", "--operator", "ana")
    assert (code, done["requeued"], done["blocked"]) == (0, 3, [])
    code, again, _ = run(env, "retry-failed", "--id", "F-0", "--id", "F-1")
    assert (code, again["requeued"], again["skipped"]) == (0, 0, 2)

    code, summary, _ = run(env, "worker", "--until-idle", "--max-seconds", "60")
    assert (code, summary["synced"], summary["action_required"]) == (0, 3, 0)
    assert sorted(i["doc_number"] for i in sim.invoices()) == ["FL-F-0", "FL-F-1", "FL-F-2"]

    code, nothing, _ = run(env, "retry-failed")
    assert code == 0 and nothing["message"].startswith("nothing to retry")
    code, checklist, _ = run(env, "checklist")
    assert all(i["ok"] for i in checklist), checklist
