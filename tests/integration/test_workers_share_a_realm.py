"""Two long-running `flightledger worker` processes on one PostgreSQL and one busy school.

Each worker keeps each realm's rate budget in its own memory. When both passed the same school
in turn, each spent a budget of its own on the one realm: at 20 flights a second QuickBooks
answered 429 and the realm paused for a minute. Now a worker keeps a school whose realm's
budget is busy (RealmLocks.hold): the realm's calls follow one budget, QuickBooks never
throttles, and every flight is one invoice.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.records import RecordKind, parse_line
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import flight, jsonl
from tests.helpers_qbo import (
    SCHOOL,
    Cli,
    assert_one_invoice_each,
    cli_env,
    connect_via_cli,
    map_via_cli,
    spawn_worker,
)
from workers.bootstrap import open_ledger

pytestmark = [pytest.mark.serial, pytest.mark.timeout(180)]
STUDENTS = {f"S-{n}": str(n) for n in range(1, 9)}
CHARGES = {"aircraft_rental": "1", "instructor_dual": "2"}
RATE = 20  # flights a second: beyond what one budget sends as single creates
SECONDS = 12


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """QBO's limits over real minutes; every request takes 0.1 s."""
    with QboSimulator(SimulatorConfig()) as simulator:
        simulator.set_faults(latency_seconds=0.1)
        yield simulator


def _throttled(sim: QboSimulator) -> dict[str, int]:
    found: dict[str, int] = {}
    for realm in sim.stats_snapshot()["realms"].values():
        for reason, n in dict(realm["throttled_by"]).items():
            found[reason] = found.get(reason, 0) + int(n)
    return found


def _arrive(pg_url: str, stop: threading.Event) -> None:
    """RATE flights a second for SECONDS, as the scheduling system records them."""
    ledger = open_ledger(pg_url)
    students = list(STUDENTS)
    try:
        started = time.monotonic()
        for n in range(RATE * SECONDS):
            if stop.is_set():
                return
            time.sleep(max(0.0, started + n / RATE - time.monotonic()))
            line = jsonl([flight(f"F-{n}", students[n % len(students)])])
            ledger.record_batch(SCHOOL, [parse_line(RecordKind.FLIGHT_ENDED, line)], actor="ops")
    finally:
        ledger.close()


def test_two_workers_on_one_busy_realm_never_get_throttled(
    pg_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """Both workers run before the first flight and keep running; 240 flights over 12 s into
    one school: no 429 from QuickBooks, one invoice per flight, every event synced, both
    workers still up."""
    cli = Cli(cli_env(sim, pg_url, SCHOOL, minute_seconds=60, timeout=5.0))
    connect_via_cli(cli)
    map_via_cli(cli, CHARGES, STUDENTS)
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    workers: list[subprocess.Popen[str]] = [spawn_worker(cli.env, log_path=log) for log in logs]
    stop = threading.Event()
    writer = threading.Thread(target=_arrive, args=(pg_url, stop), daemon=True)
    try:
        time.sleep(2.0)  # both workers up and idle
        writer.start()
        count = RATE * SECONDS
        deadline = time.monotonic() + 90
        events: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert not _throttled(sim), f"QuickBooks throttled the realm: {_throttled(sim)}"
            events = cli.ok("events")
            if len(events) == count and {e["status"] for e in events} == {"synced"}:
                break
            time.sleep(0.5)
        assert len(events) == count and {e["status"] for e in events} == {"synced"}, (
            logs[0].read_text()[-1500:] + logs[1].read_text()[-1500:]
        )
        assert _throttled(sim) == {}
        assert all(w.poll() is None for w in workers)  # long-running, still up
    finally:
        stop.set()
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
    assert_one_invoice_each(sim.invoices(), {f"FL-F-{n}" for n in range(count)})
