"""Single creates in flight at once, over real HTTP against the simulator: each invoice once with
its own requestid, never more calls at once than the realm's budget allows, and a worker killed
while several are in flight leaves no duplicate after recovery."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.quickbooks.ratelimit import BudgetLimits, RateBudget
from adapters.views import open_view
from domain.financial_event import Status
from domain.ids import request_id
from domain.ports import FixedClock
from domain.records import RecordKind, parse_line
from qbo_simulator import QboSimulator, SimulatorConfig
from services.push_pass import SyncEngine
from tests.factories import flight, jsonl
from tests.helpers_qbo import (
    SCHOOL,
    Cli,
    Rig,
    cli_env,
    connect_via_cli,
    make_rig,
    map_via_cli,
    spawn_worker,
)
from workers.bootstrap import open_ledger
from workers.projector import Projector
from workers.qbo import gateway_for

pytestmark = pytest.mark.timeout(120)
STUDENTS = {f"S-{n}": str(n) for n in range(1, 9)}
CHARGES = {"aircraft_rental": "1", "instructor_dual": "2"}
REAL_MINUTE = {"FLIGHTLEDGER_QBO_MINUTE_SECONDS": "60"}  # QBO's own windows, as the simulator's


class PeakBudget(RateBudget):
    """The realm's budget, counting the most requests it ever had in flight at once."""

    peak = 0

    def try_acquire(self, *, batch: bool = False) -> float:
        """RateBudget.try_acquire, and the in-flight count it reached."""
        wait = super().try_acquire(batch=batch)
        if wait == 0:
            self.peak = max(self.peak, self.in_flight)
        return wait


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """QBO's limits over real minutes; every request takes 0.3 s, so calls overlap."""
    with QboSimulator(SimulatorConfig(max_sleep_seconds=5)) as simulator:
        simulator.set_faults(latency_seconds=0.3)
        yield simulator


@pytest.fixture
def rig(db_url: str, sim: QboSimulator, clock: FixedClock) -> Iterator[Rig]:
    """A connected, mapped school whose gateway keeps QBO's real minute."""
    made = make_rig(db_url, sim, clock, extra_env=REAL_MINUTE)
    ledger = made.ledger
    for code, item in CHARGES.items():
        ledger.map_charge(SCHOOL, code, item, operator="ana")
    for student, customer in STUDENTS.items():
        ledger.map_student(SCHOOL, student, customer, operator="ana")
    ledger.set_defaults(SCHOOL, operator="ana", term_id="3", memo="Thanks", income_account_id="79")
    yield made
    made.ledger.close()


def _record(rig: Rig, count: int) -> None:
    students = list(STUDENTS)
    records = [
        parse_line(RecordKind.FLIGHT_ENDED, jsonl([flight(f"F-{n}", students[n % len(students)])]))
        for n in range(count)
    ]
    rig.ledger.record_batch(SCHOOL, records, actor="ops")


def _sync(rig: Rig, db_url: str, budget: RateBudget, *, batch_size: int, passes: int) -> int:
    """Passes until every event is synced (or `passes` ran); the passes run."""
    gateway = gateway_for(
        rig.ledger, rig.vault, rig.service.settings, SCHOOL, oauth=rig.service.oauth, budget=budget
    )
    view = open_view(db_url)
    try:
        engine = SyncEngine(rig.ledger, view, lambda _school: gateway, batch_size=batch_size)
        projector = Projector(rig.ledger, view)
        for n in range(1, passes + 1):
            projector.catch_up()
            engine.run_pass(SCHOOL)
            statuses = {e.status for e in rig.ledger.iter_financial_events(SCHOOL)}
            if statuses == {Status.SYNCED}:
                return n
            wake = engine.next_due(SCHOOL)
            if wake is not None:  # the pass said when the budget has room again
                time.sleep(max(0.0, (wake - rig.clock.now()).total_seconds()))
                rig.clock.advance(max(0.0, (wake - rig.clock.now()).total_seconds()))
        return passes
    finally:
        view.close()
        gateway.close()


def _requests(sim: QboSimulator) -> int:
    return sum(int(r["requests"]) for r in sim.stats_snapshot()["realms"].values())


def _one_invoice_each_with_its_own_requestid(rig: Rig, sim: QboSimulator, count: int) -> None:
    invoices = sim.invoices()
    by_doc = Counter(str(i["doc_number"]) for i in invoices)
    assert by_doc == Counter({f"FL-F-{n}": 1 for n in range(count)})
    events = {f"FL-{e.reference}": e for e in rig.ledger.iter_financial_events(SCHOOL)}
    for invoice in invoices:
        event = events[str(invoice["doc_number"])]
        assert event.status == Status.SYNCED and event.qbo_id == str(invoice["id"])
        assert invoice["request_id"] == request_id(event.id, event.generation)
    assert len({i["request_id"] for i in invoices}) == count


def test_singles_go_at_once_each_invoice_once_with_its_own_requestid(
    rig: Rig, db_url: str, sim: QboSimulator
) -> None:
    """6 flights and a budget with room for 8 singles now: one pass sends all 6 as single
    creates in flight at once (the budget counted 6 at once; sent one after another it counts
    1), each on a client of its own; one invoice each, with the event's requestid; no 429."""
    _record(rig, 6)
    budget = PeakBudget(BudgetLimits(single_burst=8))
    before = _requests(sim)
    assert _sync(rig, db_url, budget, batch_size=30, passes=1) == 1
    _one_invoice_each_with_its_own_requestid(rig, sim, 6)
    assert budget.peak == 6
    assert _requests(sim) - before == 6  # no batch, no lookup
    stats = sim.stats_snapshot()["realms"]
    assert sum(int(r["throttled"]) for r in stats.values()) == 0


def test_singles_in_flight_never_exceed_the_realms_concurrency(
    rig: Rig, db_url: str, sim: QboSimulator
) -> None:
    """12 flights, singles only, a realm allowed 3 calls at once: each pass sends 3 at once and
    says when to come back; never a fourth in flight, one invoice each."""
    _record(rig, 12)
    budget = PeakBudget(BudgetLimits(single_burst=8, concurrent=3))
    passes = _sync(rig, db_url, budget, batch_size=1, passes=20)
    assert passes >= 4  # 3 a pass at most
    assert budget.peak == 3
    _one_invoice_each_with_its_own_requestid(rig, sim, 12)


def _in_flight(sim: QboSimulator) -> int:
    return sum(sim.limiter.in_flight(realm) for realm in sim.realms())


@pytest.mark.serial
@pytest.mark.parametrize("dropped", [False, True], ids=["performed", "dropped"])
def test_a_worker_killed_with_singles_in_flight_leaves_one_invoice_each(
    sqlite_url: str, sim: QboSimulator, tmp_path: Path, dropped: bool
) -> None:
    """4 singles in flight at once at the simulator (each waits 1 s there) when the worker is
    SIGKILLed. Performed: QuickBooks created them; dropped: they never reached it. The
    restarted, long-running worker finds them interrupted and resolves each by its requestid:
    one invoice each."""
    cli = Cli(cli_env(sim, sqlite_url, SCHOOL, minute_seconds=60, timeout=5.0))
    connect_via_cli(cli)
    map_via_cli(cli, CHARGES, STUDENTS)
    ledger = open_ledger(sqlite_url)
    try:
        students = list(STUDENTS)
        records = [
            parse_line(RecordKind.FLIGHT_ENDED, jsonl([flight(f"F-{n}", students[n])]))
            for n in range(4)
        ]
        ledger.record_batch(SCHOOL, records, actor="ops")
    finally:
        ledger.close()
    sim.set_faults(latency_seconds=1.0, drop_if_client_gone=1.0 if dropped else 0.0)
    worker = spawn_worker(cli.env, "--max-seconds", "60", log_path=tmp_path / "worker.log")
    deadline = time.monotonic() + 30
    most = 0
    while most < 2 and time.monotonic() < deadline and worker.poll() is None:
        most = max(most, _in_flight(sim))
        time.sleep(0.005)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert most >= 2, "the worker never had two calls in flight at once"
    while _in_flight(sim) and time.monotonic() < deadline:  # the simulator decides each
        time.sleep(0.02)
    created_before = len(sim.invoices())
    if dropped:
        assert created_before == 0  # the client was gone: none reached QuickBooks
    else:
        assert created_before >= most  # the ones in flight were created, unanswered
    sim.set_faults(latency_seconds=0.0)

    # the restarted worker keeps running, as a supervisor restarts it in production
    restarted = spawn_worker(cli.env, log_path=tmp_path / "restarted.log")
    try:
        deadline = time.monotonic() + 60
        statuses: set[str] = set()
        while time.monotonic() < deadline and restarted.poll() is None:
            statuses = {str(r["status"]) for r in cli.ok("events")}
            if statuses == {"synced"}:
                break
            time.sleep(0.2)
        assert statuses == {"synced"}, (tmp_path / "restarted.log").read_text()[-2000:]
        assert restarted.poll() is None  # still running after it recovered
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=30)
    invoices = sim.invoices()
    assert Counter(str(i["doc_number"]) for i in invoices) == Counter(
        {f"FL-F-{n}": 1 for n in range(4)}
    )
    replays = sum(int(r["replays"]) for r in sim.stats_snapshot()["realms"].values())
    assert replays >= (0 if dropped else created_before)  # performed: answered from the first
