"""The worker loop on real databases with the real view, gateway and the QBO simulator."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from adapters.heartbeat import open_heartbeat
from adapters.persistence import parse_database_url
from adapters.realm_locks import PostgresRealmLocks, SQLiteRealmLocks, open_realm_locks
from adapters.views import open_view
from domain.financial_event import Status
from domain.ports import FixedClock
from domain.records import RecordKind, parse_line
from qbo_simulator import QboSimulator, SimulatorConfig
from services.push_pass import SyncEngine
from services.retry import retry_failed
from tests.factories import flight, jsonl
from tests.helpers_qbo import SCHOOL, Rig, make_rig, sim_env
from workers.bootstrap import Config
from workers.projector import Projector
from workers.runtime import gateway_factory
from workers.worker_loop import WorkerLoop

pytestmark = pytest.mark.timeout(120)
STUDENTS = ("S-1", "S-2", "S-3")


@pytest.fixture(scope="module")
def sim() -> Iterator[QboSimulator]:
    """One simulator for the module."""
    with QboSimulator(SimulatorConfig()) as simulator:
        yield simulator


@pytest.fixture
def rig(
    db_url: str, sim: QboSimulator, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    """A connected school on a fresh database and a fresh simulator."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    sim.reset()
    sim.set_faults(replay_failures=True)  # a repeated requestid gets its first answer, faults too
    made = make_rig(db_url, sim, clock)
    yield made
    made.ledger.close()


def _map(rig: Rig, *, skip_charge: str | None = None) -> None:
    ledger = rig.ledger
    for code, item in {"aircraft_rental": "1", "instructor_dual": "2"}.items():
        if code != skip_charge:
            ledger.map_charge(SCHOOL, code, item, operator="ana")
    for n, student in enumerate(STUDENTS, start=1):
        ledger.map_student(SCHOOL, student, str(n), operator="ana")
    ledger.set_defaults(SCHOOL, operator="ana", term_id="3", memo="Thanks", income_account_id="79")


def _record_day(rig: Rig, n: int) -> None:
    records = [
        parse_line(RecordKind.FLIGHT_ENDED, jsonl([flight(f"F-{i}", STUDENTS[i % 3])]))
        for i in range(n)
    ]
    rig.ledger.record_batch(SCHOOL, records, actor="ops")


Run = Callable[[], dict[str, object]]


@pytest.fixture
def run(rig: Rig, db_url: str, sim: QboSimulator) -> Iterator[Run]:
    """One worker loop kept for the whole test (as a running worker is): each call runs it
    until idle again, with the real gateway factory reading the vault and the log."""
    db = parse_database_url(db_url)
    view = open_view(db)
    locks = open_realm_locks(db)
    config = Config(db_url=db_url, school=SCHOOL, env=sim_env(sim))
    engine = SyncEngine(rig.ledger, view, gateway_factory(rig.ledger, config))
    loop = WorkerLoop(
        engine,
        view,
        locks,
        catch_up=Projector(rig.ledger, view).catch_up,
        heartbeat=open_heartbeat(db),
        poll_seconds=0.05,
    )
    try:
        yield lambda: loop.run(until_idle=True, max_seconds=60).as_dict()
    finally:
        locks.close()
        view.close()


def test_missing_mapping_then_retry_syncs_every_flight(
    rig: Rig, run: Run, db_url: str, sim: QboSimulator
) -> None:
    """Unmapped charge -> missing_mapping naming it; map + retry -> one invoice per flight."""
    _map(rig, skip_charge="instructor_dual")
    _record_day(rig, 35)
    first = run()
    assert first["action_required"] == 35 and first["synced"] == 0
    f0 = rig.ledger.find(SCHOOL, "F-0")
    assert (f0.reason_code, f0.missing) == ("missing_mapping", ["charge:instructor_dual"])
    assert sim.invoices() == []
    rig.ledger.map_charge(SCHOOL, "instructor_dual", "2", operator="ana")
    assert (
        retry_failed(rig.ledger, SCHOOL, reason="missing_mapping", ids=[], operator="ana").requeued
        == 35
    )
    second = run()
    assert second["synced"] == 35 and second["pending"] == 0
    docs = sorted(i["doc_number"] for i in sim.invoices())
    assert docs == sorted(f"FL-F-{i}" for i in range(35))
    assert open_heartbeat(parse_database_url(db_url)).last_seen() is not None


def test_revoked_tokens_then_reconnect_and_retry(rig: Rig, run: Run, sim: QboSimulator) -> None:
    """Tokens revoked mid-day -> auth_expired; reconnect + Retry Failed -> all synced."""
    _map(rig)
    _record_day(rig, 4)
    assert run()["synced"] == 4
    _record_day_more = [
        parse_line(RecordKind.FLIGHT_ENDED, jsonl([flight(f"G-{i}", "S-1")])) for i in range(5)
    ]
    rig.ledger.record_batch(SCHOOL, _record_day_more, actor="ops")
    sim.reset(clear_tokens=True)
    sim.set_faults(replay_failures=True)
    summary = run()
    assert summary["action_required"] == 5
    reasons = {e.reason_code for e in rig.ledger.iter_financial_events(SCHOOL) if e.reason_code}
    assert reasons == {"auth_expired"}
    assert (
        retry_failed(rig.ledger, SCHOOL, reason="auth_expired", ids=[], operator="ana").requeued
        == 0
    )
    assert rig.service.connect_simulator(SCHOOL, "ana").ok
    assert (
        retry_failed(rig.ledger, SCHOOL, reason="auth_expired", ids=[], operator="ana").requeued
        == 5
    )
    final = run()
    assert final["synced"] == 9
    statuses = {e.status for e in rig.ledger.iter_financial_events(SCHOOL)}
    assert statuses == {Status.SYNCED}
    assert len([i for i in sim.invoices() if i["doc_number"].startswith("FL-G-")]) == 5


def test_postgres_advisory_lock_is_exclusive_and_released_by_death(pg_url: str) -> None:
    """Two workers cannot own one school; closing the owner's session lets the other take it."""
    db = parse_database_url(pg_url)
    a, b = PostgresRealmLocks(db), PostgresRealmLocks(db)
    try:
        assert a.try_acquire("north") and a.try_acquire("north")
        assert not b.try_acquire("north")
        assert b.try_acquire("south")
        a.close()  # the session ends as it would when the worker dies
        # The server drops a closed session's locks as its backend exits, a moment later.
        deadline = time.monotonic() + 10
        while not b.try_acquire("north") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "north" in b.held
    finally:
        a.close()
        b.close()


def test_a_workers_threads_exclude_each_other_on_one_lock_connection(pg_url: str) -> None:
    """The pass threads of one worker share its lock connection: a school taken by one thread
    is refused to another until released; 16 threads holding 16 schools use one connection."""
    db = parse_database_url(pg_url)
    locks = PostgresRealmLocks(db)
    try:
        assert locks.try_acquire("north")
        with ThreadPoolExecutor(1) as other:
            assert other.submit(locks.try_acquire, "north").result() is False
            assert other.submit(locks.try_acquire, "south").result() is True
            locks.release("south")  # not this thread's: nothing happens
            assert other.submit(lambda: locks.held).result() == {"south"}
            other.submit(locks.release, "south").result()
        assert locks.held == {"north"}
        locks.release("north")
        barrier = threading.Barrier(16)

        def hold(n: int) -> bool:
            owned = locks.try_acquire(f"school-{n}")
            barrier.wait(timeout=10)  # all 16 held at once
            locks.release(f"school-{n}")
            return owned

        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(hold, range(16)))
        with psycopg.connect(db.psycopg_conninfo(), autocommit=True) as admin:
            (count,) = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (f"flightledger worker {os.getpid()}",),
            ).fetchone() or (0,)
        assert count == 1
        other_worker = PostgresRealmLocks(db)
        try:
            assert all(other_worker.try_acquire(f"school-{n}") for n in range(16))
        finally:
            other_worker.close()
    finally:
        locks.close()


def test_a_school_kept_between_passes_stays_with_the_worker(pg_url: str) -> None:
    """hold: the lock outlives the pass; another worker cannot take the school, any thread of
    this worker can (and release it); after the lock connection died the kept school is taken
    afresh on the new one, not assumed held."""
    db = parse_database_url(pg_url)
    locks, other = PostgresRealmLocks(db), PostgresRealmLocks(db)
    try:
        assert locks.try_acquire("north")
        locks.hold("north")
        assert locks.kept == {"north"} and locks.held == set()
        assert not other.try_acquire("north")
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(locks.try_acquire, "north").result() is True
            assert locks.kept == set()  # in a pass on that thread now
            pool.submit(locks.hold, "north").result()
        assert locks.kept == {"north"}
        locks.release("north")  # kept: the loop's thread may hand it back
        assert locks.kept == set() and other.try_acquire("north")
        other.release("north")

        assert locks.try_acquire("south")
        locks.hold("south")
        locks._connection().close()  # the session (and its locks) is gone
        assert locks.try_acquire("south")  # taken again on a new connection
        assert not other.try_acquire("south")
    finally:
        locks.close()
        other.close()


def test_sqlite_single_worker_lock(sqlite_url: str) -> None:
    """On SQLite the first worker owns the file; a second gets nothing until the first closes."""
    db = parse_database_url(sqlite_url)
    a, b = SQLiteRealmLocks(db), SQLiteRealmLocks(db)
    try:
        assert a.try_acquire("north")
        assert not b.try_acquire("south")
        a.close()
        assert b.try_acquire("south")
    finally:
        a.close()
        b.close()
