"""Corrections under SIGKILL: a worker killed at random moments while it corrects invoices.

Flights are synced and some paid first (no faults). Then a mix of corrections is recorded
(amend unpaid, amend paid, cancel unpaid, cancel paid, refunds) and a `flightledger worker`
subprocess, started with latency and after-commit faults in the simulator, is killed with
SIGKILL again and again while it talks to QuickBooks. At the end QuickBooks must hold exactly
what the log says: each updated invoice at its amended total, each cancelled unpaid invoice
voided, one credit memo per reduced or cancelled paid invoice, one refund receipt per refund,
and no document twice.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import amendment, cancellation, flight, jsonl, payment, refund
from tests.helpers_qbo import Cli, cli_env, connect_via_cli, map_via_cli, spawn_worker
from workers.bootstrap import open_ledger

SCHOOL = "sunrise"
STUDENTS = {f"S-{n}": str(n) for n in range(1, 6)}
CHARGES = {"aircraft_rental": "1", "instructor_dual": "2"}
SEED = int(os.environ.get("FLIGHTLEDGER_CRASH_SEED", "13"))
FULL = Decimal("270.00")  # tests.factories.flight
AMENDED = Decimal("225.00")  # tests.factories.amendment with 1.0 hours


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator with its limits scaled out of the way."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6)) as simulator:
        yield simulator


def _requests(sim: QboSimulator) -> int:
    return sum(int(r["requests"]) for r in sim.stats_snapshot()["realms"].values())


def _record(cli: Cli, tmp: Path, kind: str, records: list[dict[str, Any]]) -> None:
    path = tmp / f"{kind}.jsonl"
    path.write_text(jsonl(records))
    done = cli.ok("record", kind, str(path))
    assert done["recorded"] == len(records), done


def _interrupted_corrections(db_url: str, refs: list[str]) -> tuple[int, int]:
    """(corrections interrupted by a kill, of which found already applied in QuickBooks)."""
    ledger = open_ledger(db_url)
    try:
        interrupted = found = 0
        for ref in refs:
            h = [(e.type, e.data.get("code")) for e in ledger.history(SCHOOL, ref)]
            for i in range(1, len(h) - 1):
                if h[i] == ("PushFailed", "interrupted") and h[i - 1][0] == "CorrectionStarted":
                    interrupted += 1
                    found += h[i + 1][0] == "CorrectionApplied"
        return interrupted, found
    finally:
        ledger.close()


def _crash_loop(
    db_url: str, sim: QboSimulator, tmp: Path, groups: int, kills: int, *, hit: bool = False
) -> None:
    rng = random.Random(SEED)
    cli = Cli(cli_env(sim, db_url, SCHOOL, timeout=1.0))
    connect_via_cli(cli)
    map_via_cli(cli, CHARGES, STUDENTS)
    cli.ok("mappings", "set", "payment-type", "card", "--deposit-account", "35")
    students = list(STUDENTS)
    # five flights per group: amend unpaid, cancel unpaid, amend paid, cancel paid, refund paid
    flights = [f"F-{g}-{k}" for g in range(groups) for k in range(5)]
    student_of = {f: students[i % len(students)] for i, f in enumerate(flights)}
    _record(cli, tmp, "flight-ended", [flight(f, student_of[f]) for f in flights])
    paid = [f for f in flights if f.endswith(("-2", "-3", "-4"))]
    _record(
        cli,
        tmp,
        "payment-received",
        [payment(f"P-{f}", student_of[f], applies_to=f, amount="270.00") for f in paid],
    )
    assert cli.ok("worker", "--until-idle", "--max-seconds", "120")["pending"] == 0

    amend = [f for f in flights if f.endswith(("-0", "-2"))]
    cancel = [f for f in flights if f.endswith(("-1", "-3"))]
    refunded = [f for f in flights if f.endswith("-4")]
    _record(
        cli, tmp, "flight-amended", [amendment(f, "1.0", student=student_of[f]) for f in amend]
    )  # fmt: skip
    _record(cli, tmp, "flight-cancelled", [cancellation(f) for f in cancel])
    _record(cli, tmp, "payment-refunded", [refund(f"R-{f}", f"P-{f}", "70.00") for f in refunded])

    sim.set_faults(
        latency_seconds=0.1,
        timeout_rate=0.05,
        timeout_seconds=1.5,
        fault_rate=0.05,
        fault_after_commit=1.0,
        fault_seed=SEED,
    )
    busy = 0
    for round_number in range(kills):
        sim.set_faults(drop_if_client_gone=1.0 if round_number % 3 == 2 else 0.0)
        before = _requests(sim)
        worker = spawn_worker(cli.env, "--max-seconds", "60", log_path=tmp / "worker.log")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and worker.poll() is None:
            if _requests(sim) > before:
                busy += 1
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        time.sleep(0.2)  # past the latency: the killed worker's last request has been decided
    assert busy >= kills // 2, f"only {busy} of {kills} kills hit a busy worker"

    sim.set_faults(timeout_rate=0.0, fault_rate=0.0, latency_seconds=0.0)
    summary = cli.ok("worker", "--until-idle", "--max-seconds", "120")
    if summary["failed"] or summary["action_required"]:
        cli.ok("retry-failed", "--operator", "ana")
        summary = cli.ok("worker", "--until-idle", "--max-seconds", "120")
    assert (summary["pending"], summary["uncertain"], summary["failed"]) == (0, 0, 0), summary

    invoices = sim.invoices()
    docs = Counter(str(i["doc_number"]) for i in invoices)
    assert [d for d, n in docs.items() if n > 1] == []
    assert set(docs) == {f"FL-{f}" for f in flights}  # no supplementary invoice in this mix
    by_doc = {str(i["doc_number"]): i for i in invoices}
    for f in amend:
        if f in paid:  # paid: untouched, the reduction is a credit memo
            assert (by_doc[f"FL-{f}"]["total"], by_doc[f"FL-{f}"]["voided"]) == ("270.00", False)
        else:
            assert Decimal(by_doc[f"FL-{f}"]["total"]) == AMENDED
    for f in cancel:
        assert by_doc[f"FL-{f}"]["voided"] is (f not in paid)
    memos = Counter(str(m["doc_number"]) for m in sim.credit_memos())
    assert [d for d, n in memos.items() if n > 1] == []
    expected_memos = {f"FL-{f}-C1": FULL - AMENDED for f in amend if f in paid}
    expected_memos |= {f"FL-{f}-C1": FULL for f in cancel if f in paid}
    assert {str(m["doc_number"]): Decimal(m["total"]) for m in sim.credit_memos()} == expected_memos
    refunds = Counter(str(r["doc_number"]) for r in sim.refunds())
    assert refunds == Counter({f"RF-R-{f}": 1 for f in refunded})

    rows = {r["reference"]: r for r in cli.ok("events")}
    assert {rows[f]["status"] for f in flights} == {"synced"}
    rebuilt = cli.ok("view", "rebuild")
    assert rebuilt["events"] > 0
    assert {r["reference"]: r for r in cli.ok("events")} == rows
    if hit:  # the long run must have killed workers between CorrectionStarted and its outcome
        interrupted, found = _interrupted_corrections(db_url, amend + cancel)
        assert interrupted > 0 and found > 0, (interrupted, found)


def test_sigkilled_corrections_quick(sqlite_url: str, sim: QboSimulator, tmp_path: Path) -> None:
    """Three SIGKILLs over ten flights' corrections (SQLite): QBO as the log says, nothing twice."""
    _crash_loop(sqlite_url, sim, tmp_path, groups=2, kills=3)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_sigkilled_corrections_soak(db_url: str, sim: QboSimulator, tmp_path: Path) -> None:
    """Ten SIGKILLs over 40 flights' corrections, both backends: no document twice."""
    _crash_loop(db_url, sim, tmp_path, groups=8, kills=10, hit=True)
