"""Several `flightledger worker` processes on one PostgreSQL with 20 schools (one realm each).

Two and then four workers run concurrently with --until-idle: every flight becomes exactly one
invoice in its own realm and every event is synced. Then a worker is SIGKILLed while it holds a
school's advisory lock: the lock is released with its session and another worker finishes that
school.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.persistence import parse_database_url
from adapters.realm_locks import lock_key
from domain.application import FlightLedger
from domain.records import RecordKind, parse_line
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import flight, jsonl
from tests.helpers_qbo import Cli, cli_env, spawn_worker
from workers.bootstrap import open_ledger
from workers.qbo import ConnectionService, open_vault, qbo_settings_from_env

pytestmark = [pytest.mark.serial, pytest.mark.timeout(300)]
SCHOOLS = [f"school-{n:02d}" for n in range(20)]
STUDENTS = ("S-1", "S-2", "S-3")
PER_SCHOOL = 6


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator giving every new connection a realm of its own."""
    config = SimulatorConfig(minute_seconds=0.6, one_realm_per_connection=True)
    with QboSimulator(config) as simulator:
        yield simulator


@pytest.fixture
def env(pg_url: str, sim: QboSimulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """20 schools connected through the OAuth flow (one realm each) and fully mapped."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    variables = cli_env(sim, pg_url)
    ledger = open_ledger(pg_url)
    try:
        vault = open_vault(pg_url, variables, create_key=False)
        service = ConnectionService(ledger, vault, qbo_settings_from_env(variables, vault))
        for school in SCHOOLS:
            assert service.connect_simulator(school, "ana").ok
            ledger.map_charge(school, "aircraft_rental", "1", operator="ana")
            ledger.map_charge(school, "instructor_dual", "2", operator="ana")
            for n, student in enumerate(STUDENTS, start=1):
                ledger.map_student(school, student, str(n), operator="ana")
            ledger.set_defaults(
                school, operator="ana", term_id="3", memo="Thanks", income_account_id="79"
            )
    finally:
        ledger.close()
    assert len(set(sim.realms())) == len(SCHOOLS)
    return variables


def _record(ledger: FlightLedger, wave: str) -> None:
    for school in SCHOOLS:
        records = [
            parse_line(
                RecordKind.FLIGHT_ENDED,
                jsonl([flight(f"{wave}-{i}", STUDENTS[i % len(STUDENTS)])]),
            )
            for i in range(PER_SCHOOL)
        ]
        ledger.record_batch(school, records, actor="ops")


def _finish(worker: subprocess.Popen[str], log: Path) -> dict[str, Any]:
    stdout, _ = worker.communicate(timeout=180)
    assert worker.returncode == 0, log.read_text()[-3000:]
    summary: dict[str, Any] = json.loads(stdout)
    return summary


def _run_workers(env: dict[str, str], n: int, logs: Path) -> list[dict[str, Any]]:
    paths = [logs / f"worker-{n}-{i}.log" for i in range(n)]
    logged = {**env, "FLIGHTLEDGER_LOG_LEVEL": "INFO"}
    workers = [
        spawn_worker(logged, "--until-idle", "--max-seconds", "120", log_path=path)
        for path in paths
    ]
    summaries = [_finish(worker, path) for worker, path in zip(workers, paths, strict=True)]
    for path in paths:  # each stopped because nothing was left, not at --max-seconds (a
        # wake-up left for a school another worker finished once kept it polling until then)
        text = path.read_text()
        stopped = [json.loads(line) for line in text.splitlines() if "worker_stopped" in line]
        assert [line["idle"] for line in stopped] == [True], text[-3000:]
    return summaries


def _assert_all_synced_once(sim: QboSimulator, cli: Cli, waves: list[str]) -> None:
    expected = {f"FL-{w}-{i}" for w in waves for i in range(PER_SCHOOL)}
    for school in SCHOOLS:
        rows = cli.ok("events", school=school)
        assert len(rows) == PER_SCHOOL * len(waves), school
        assert {r["status"] for r in rows} == {"synced"}, school
    invoices = sim.invoices()
    per_realm = Counter((str(i["realm"]), str(i["doc_number"])) for i in invoices)
    assert [key for key, n in per_realm.items() if n > 1] == []
    realms = {str(i["realm"]) for i in invoices}
    assert len(realms) == len(SCHOOLS)
    for realm in realms:
        assert {d for r, d in per_realm if r == realm} == expected


def test_two_then_four_workers_sync_twenty_schools_once(
    pg_url: str, env: dict[str, str], sim: QboSimulator, tmp_path: Path
) -> None:
    """2, then 4 concurrent workers on 20 schools: every event synced, no duplicate invoice."""
    cli = Cli(env)
    ledger = open_ledger(pg_url)
    try:
        _record(ledger, "A")
        summaries = _run_workers(env, 2, tmp_path)
        assert all(s["synced"] == len(SCHOOLS) * PER_SCHOOL for s in summaries)
        assert sum(s["passes"] for s in summaries) >= len(SCHOOLS)
        _assert_all_synced_once(sim, cli, ["A"])

        _record(ledger, "B")
        summaries = _run_workers(env, 4, tmp_path)
        assert all(s["synced"] == 2 * len(SCHOOLS) * PER_SCHOOL for s in summaries)
        assert sum(s["passes"] for s in summaries) >= len(SCHOOLS)
        _assert_all_synced_once(sim, cli, ["A", "B"])
    finally:
        ledger.close()
    throttled = sum(int(r["throttled"]) for r in sim.stats_snapshot()["realms"].values())
    assert throttled == 0


def _held_locks(pg_url: str) -> dict[str, str]:
    """School -> the worker holding its advisory lock now (the lock session's application_name:
    a worker's pass threads each have a session of their own, all named for the process)."""
    db = parse_database_url(pg_url)
    by_key = {lock_key(db, school) & 0xFFFFFFFFFFFFFFFF: school for school in SCHOOLS}
    with psycopg.connect(db.psycopg_conninfo(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT l.classid::bigint, l.objid::bigint, a.application_name FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
        ).fetchall()
    held = {}
    for classid, objid, owner in rows:
        school = by_key.get((int(classid) << 32) | int(objid))
        if school is not None:
            held[school] = str(owner)
    return held


def _wait_for_lock(pg_url: str, timeout: float, owner: str | None = None) -> dict[str, str]:
    """Poll until a school is locked (by `owner`, if given): school -> owner from one snapshot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = {s: o for s, o in _held_locks(pg_url).items() if owner is None or o == owner}
        if held:
            return held
        time.sleep(0.005)
    raise AssertionError("no worker took a school's lock in time")


def test_killed_worker_schools_are_taken_over(
    pg_url: str, env: dict[str, str], sim: QboSimulator, tmp_path: Path
) -> None:
    """A worker SIGKILLed while owning a school: its lock is freed and another worker syncs it."""
    cli = Cli(env)
    ledger = open_ledger(pg_url)
    try:
        _record(ledger, "K")
    finally:
        ledger.close()
    sim.set_faults(latency_seconds=0.2)  # every pass takes a while: the kill lands inside one
    victim = spawn_worker(env, "--max-seconds", "120")
    (victim_id,) = set(_wait_for_lock(pg_url, timeout=60).values())  # the only worker so far
    assert victim_id == f"flightledger worker {victim.pid}"
    survivor = spawn_worker(
        env, "--until-idle", "--max-seconds", "120", log_path=tmp_path / "survivor.log"
    )
    held_at_kill = set(_wait_for_lock(pg_url, timeout=30, owner=victim_id))
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    sim.set_faults(latency_seconds=0.0)
    assert _finish(survivor, tmp_path / "survivor.log")["synced"] == len(SCHOOLS) * PER_SCHOOL
    assert _held_locks(pg_url) == {}
    _assert_all_synced_once(sim, cli, ["K"])
    for school in held_at_kill:
        history = cli.ok("history", f"K-{PER_SCHOOL - 1}", school=school)
        assert history[-1]["type"] == "Synced"


def test_single_creates_at_full_speed_are_not_throttled(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One realm pushed single creates back to back: the gateway's budget never draws a 429."""
    from datetime import UTC, datetime

    from domain.ports import FixedClock
    from tests.helpers_qbo import draft, make_rig

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with QboSimulator(SimulatorConfig(minute_seconds=1.2)) as sim:
        rig = make_rig(
            sqlite_url,
            sim,
            FixedClock(datetime.now(UTC)),
            extra_env={"FLIGHTLEDGER_QBO_MINUTE_SECONDS": "1.2"},
        )
        try:
            gateway = rig.gateway()
            throttled = 0
            for n in range(300):
                gateway.push_invoice(draft(n))
                throttled = int(sim.stats_snapshot()["realms"][sim.realms()[0]]["throttled"])
                if throttled:
                    break
        finally:
            rig.ledger.close()
    assert throttled == 0
