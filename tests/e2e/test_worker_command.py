"""`worker` as a command: signal handling inside another program; what `--until-idle` answers
when QuickBooks is unavailable (a real worker subprocess against the simulator)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import flight
from tests.helpers_qbo import (
    CHARGE_ITEMS,
    Cli,
    cli_env,
    connect_via_cli,
    map_via_cli,
    record_via_cli,
    spawn_worker,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator in this process (the worker's QuickBooks settings point at it)."""
    with QboSimulator(SimulatorConfig()) as simulator:
        yield simulator


def test_worker_restores_the_signal_handlers_it_replaced(
    sqlite_url: str, sim: QboSimulator
) -> None:
    """After `worker --until-idle` in process, SIGTERM and SIGINT reach their old handlers."""
    received: list[int] = []

    def mine(sig: int, _frame: object) -> None:
        received.append(sig)

    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = Cli(cli_env(sim, sqlite_url)).ok("worker", "--until-idle", "--max-seconds", "30")
        assert summary["synced"] == 0
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _three_flights(cli: Cli, tmp_path: Path) -> None:
    connect_via_cli(cli)
    map_via_cli(cli, CHARGE_ITEMS, {"S-7": "1"})
    record_via_cli(cli, tmp_path / "flights.jsonl", [flight(f"F-{n}") for n in range(3)])


def _worker(cli: Cli, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """A real `worker --until-idle` subprocess: exit code, its JSON and its stderr."""
    log = tmp_path / "worker.log"
    log.unlink(missing_ok=True)
    worker = spawn_worker(cli.env, "--until-idle", *args, log_path=log)
    out, _ = worker.communicate(timeout=150)
    stderr = log.read_text()
    assert "Traceback" not in stderr, stderr[-2000:]
    return worker.returncode, json.loads(out), stderr


def test_until_idle_gives_up_naming_the_school_when_quickbooks_stays_down(
    db_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """QuickBooks down: the worker waits while retries come, then (its circuit open for longer
    than --wait-unavailable) exits 1 naming the school and why; nothing is lost: once QuickBooks
    is back the next run syncs everything and exits 0."""
    cli = Cli(cli_env(sim, db_url, "sunrise"))  # set up in process; the worker a subprocess
    _three_flights(cli, tmp_path)
    sim.set_faults(fault_rate=1.0)
    code, out, stderr = _worker(cli, tmp_path, "--wait-unavailable", "3", "--max-seconds", "120")
    assert code == 1, out
    assert out["stopped"] == "unavailable"
    assert [row["school"] for row in out["left"]] == ["sunrise"]
    assert "sunrise: " in out["error"] and "circuit is open" in out["error"], out["error"]
    assert "QuickBooks answered" in out["left"][0]["waiting"]  # QBO's own words
    assert "error: worker stopped with work left" in stderr
    assert out["synced"] == 0 and out["pending"] + out["retrying"] + out["uncertain"] == 3
    assert out["seconds"] < 100  # gave up on the bound, not on --max-seconds

    sim.set_faults(fault_rate=0.0)
    code, out, _ = _worker(cli, tmp_path, "--max-seconds", "120")
    assert code == 0, out
    assert (out["synced"], out["uncertain"], out["retrying"], out["pending"]) == (3, 0, 0, 0)
    assert len(sim.invoices()) == 3


def test_until_idle_stopped_by_max_seconds_with_work_left_exits_1(
    sqlite_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """A throttled realm (every answer 429) and --max-seconds reached first: exit 1, the school
    and the throttle named; not exit 0 as if nothing were left."""
    cli = Cli(cli_env(sim, sqlite_url, "sunrise"))
    _three_flights(cli, tmp_path)
    sim.set_faults(force_error={"preset": "throttle_3001", "count": 100_000, "on": "any"})
    code, out, _ = _worker(cli, tmp_path, "--max-seconds", "4")
    assert code == 1, out
    assert out["stopped"] == "max_seconds"
    assert "--max-seconds was reached" in out["error"] and "sunrise: " in out["error"]
    assert out["synced"] == 0 and len(out["left"]) == 1
    assert "throttled" in out["left"][0]["waiting"] or "429" in out["left"][0]["waiting"]
