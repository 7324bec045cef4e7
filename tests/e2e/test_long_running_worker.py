"""Recovery stories against one `flightledger worker` subprocess left running through them.

The worker is started before the fault and never restarted: it must follow what other processes
(the CLI here, the dashboard in production) write to the log and the token vault.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import flight
from tests.helpers_qbo import (
    Cli,
    assert_one_invoice_each,
    cli_env,
    connect_via_cli,
    map_via_cli,
    record_via_cli,
    spawn_worker,
)

pytestmark = pytest.mark.timeout(180)
SCHOOL = "sunrise"
STUDENTS = {"S-1": "1", "S-2": "2"}
CHARGES = {"aircraft_rental": "1", "instructor_dual": "2"}
WAIT_SECONDS = 30.0


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator in this process; the worker subprocess reaches it over loopback HTTP."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6)) as simulator:
        yield simulator


def wait_for(what: str, condition: Callable[[], Any], worker: subprocess.Popen[str]) -> Any:
    """Poll condition until it is truthy; fail when the worker died or time ran out."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert worker.poll() is None, f"the worker exited ({worker.returncode}) waiting for {what}"
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def statuses(cli: Cli, refs: set[str]) -> dict[str, tuple[str, str | None]]:
    """reference -> (status, reason_code) of the view's rows for these references."""
    rows = cli.ok("events")
    return {r["reference"]: (r["status"], r["reason_code"]) for r in rows if r["reference"] in refs}


def all_in(cli: Cli, refs: set[str], status: str, reason: str | None = None) -> bool:
    """Every reference shows status (and reason, when given) in the view."""
    seen = statuses(cli, refs)
    return len(seen) == len(refs) and all(
        s == status and (reason is None or r == reason) for s, r in seen.values()
    )


@pytest.fixture
def running(
    db_url: str, sim: QboSimulator, tmp_path: Path
) -> Iterator[tuple[Cli, subprocess.Popen[str]]]:
    """A connected, mapped school and a worker subprocess that keeps running (stopped after)."""
    cli = Cli(cli_env(sim, db_url, SCHOOL))
    sim.set_faults(replay_failures=True)  # a repeated requestid gets its first answer, faults too
    connect_via_cli(cli)
    map_via_cli(cli, CHARGES, STUDENTS)
    worker = spawn_worker(cli.env, "--max-seconds", "170", log_path=tmp_path / "worker.log")
    try:
        yield cli, worker
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)


def _requests(sim: QboSimulator) -> int:
    """API requests the simulator served (every realm)."""
    return sum(int(r["requests"]) for r in sim.stats_snapshot()["realms"].values())


def _flights(tmp_path: Path, cli: Cli, name: str, refs: list[str]) -> set[str]:
    record_via_cli(
        cli, tmp_path / f"{name}.jsonl", [flight(r, f"S-{1 + n % 2}") for n, r in enumerate(refs)]
    )
    return set(refs)


def test_reconnect_after_revoke_then_retry_syncs_on_the_same_worker(
    running: tuple[Cli, subprocess.Popen[str]], sim: QboSimulator, tmp_path: Path
) -> None:
    """Revoked refresh token -> auth_expired; reconnect + Retry Failed -> the same worker syncs."""
    cli, worker = running
    before = _flights(tmp_path, cli, "before", ["F-1", "F-2"])
    wait_for("the first flights to sync", lambda: all_in(cli, before, "synced"), worker)
    sim.set_faults(revoke_refresh_tokens=True, expire_access_tokens_now=True)
    after = _flights(tmp_path, cli, "after", ["F-3", "F-4", "F-5"])
    wait_for(
        "auth_expired",
        lambda: all_in(cli, after, "action_required", "auth_expired"),
        worker,
    )
    assert cli.ok("connection", "status")["pill"] == "Reconnect"
    calls = _requests(sim)
    late = _flights(tmp_path, cli, "late", ["F-6"])
    wait_for("auth_expired", lambda: all_in(cli, late, "action_required", "auth_expired"), worker)
    assert _requests(sim) == calls  # an expired school calls QuickBooks no more
    after |= late
    connect_via_cli(cli)
    assert cli.ok("connection", "status")["pill"] == "Connected"
    retried = cli.ok("retry-failed", "--reason", "auth_expired")
    assert retried["requeued"] == 4, retried
    wait_for("the retried flights to sync", lambda: all_in(cli, after, "synced"), worker)
    assert worker.poll() is None
    assert cli.ok("connection", "status")["pill"] == "Connected"
    assert_one_invoice_each(sim.invoices(), {f"FL-{r}" for r in before | after})


def test_missing_mapping_then_map_and_retry_syncs_on_the_same_worker(
    running: tuple[Cli, subprocess.Popen[str]], sim: QboSimulator, tmp_path: Path
) -> None:
    """Unmapped student -> missing_mapping; map + Retry Failed -> the same worker syncs."""
    cli, worker = running
    refs = {"F-7", "F-8"}
    record_via_cli(cli, tmp_path / "new.jsonl", [flight(r, "S-9") for r in sorted(refs)])
    wait_for(
        "missing_mapping",
        lambda: all_in(cli, refs, "action_required", "missing_mapping"),
        worker,
    )
    cli.ok("mappings", "set", "student", "S-9", "--customer", "3")
    assert cli.ok("retry-failed", "--reason", "missing_mapping")["requeued"] == 2
    wait_for("the mapped flights to sync", lambda: all_in(cli, refs, "synced"), worker)
    assert worker.poll() is None
    assert_one_invoice_each(sim.invoices(), {f"FL-{r}" for r in refs})


def test_disconnect_stops_the_running_worker_at_once(
    running: tuple[Cli, subprocess.Popen[str]], sim: QboSimulator, tmp_path: Path
) -> None:
    """Disconnected in another process: the running worker sends nothing more, not_connected."""
    cli, worker = running
    first = _flights(tmp_path, cli, "first", ["F-10"])
    wait_for("the first flight to sync", lambda: all_in(cli, first, "synced"), worker)
    cli.ok("connection", "disconnect")
    later = _flights(tmp_path, cli, "later", ["F-11"])
    wait_for(
        "not_connected", lambda: all_in(cli, later, "action_required", "not_connected"), worker
    )
    assert [i["doc_number"] for i in sim.invoices()] == ["FL-F-10"]
    connect_via_cli(cli)
    assert cli.ok("retry-failed", "--reason", "not_connected")["requeued"] == 1
    wait_for("the flight to sync after reconnect", lambda: all_in(cli, later, "synced"), worker)
    assert_one_invoice_each(sim.invoices(), {"FL-F-10", "FL-F-11"})


def test_refused_push_then_retry_sends_a_new_request_id_on_the_same_worker(
    running: tuple[Cli, subprocess.Popen[str]], sim: QboSimulator, tmp_path: Path
) -> None:
    """A 6000 that QBO replays for its requestid: Retry Failed sends generation 1 and syncs."""
    cli, worker = running
    sim.set_faults(force_error={"preset": "validation_6000", "count": 1})
    refs = _flights(tmp_path, cli, "refused", ["F-20"])
    wait_for("validation", lambda: all_in(cli, refs, "action_required", "validation"), worker)
    assert cli.ok("retry-failed", "--reason", "validation")["requeued"] == 1
    wait_for("the retried flight to sync", lambda: all_in(cli, refs, "synced"), worker)
    invoices = sim.invoices()
    assert_one_invoice_each(invoices, {"FL-F-20"})
    assert str(invoices[0]["request_id"]).endswith("-r1")
