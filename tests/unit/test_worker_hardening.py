"""Worker hardening (issue 9): shutdown inside a pass, the realm circuit breaker, unhealthy loop."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from domain.application import FlightLedger
from domain.ports import FixedClock
from domain.sync import CircuitBreaker
from services.push_pass import SyncEngine
from tests.fakes import (
    T0,
    FakeAccountingGateway,
    FakeFinancialEventView,
    FreeLocks,
    ready_school,
    record_flights,
)
from workers.worker_loop import UNHEALTHY_ROUNDS_UNTIL_IDLE, WorkerLoop

SCHOOL = "default"


def setup(n: int) -> tuple[FlightLedger, FixedClock, FakeAccountingGateway, SyncEngine, list[str]]:
    """A ready school with n flights, a fake QBO and an engine sending one invoice per call."""
    clock = FixedClock(T0)
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    ready_school(ledger, SCHOOL)
    flights = record_flights(ledger, n, SCHOOL)
    gateway = FakeAccountingGateway(ledger=ledger)
    engine = SyncEngine(
        ledger,
        FakeFinancialEventView(ledger),
        lambda s: gateway,
        rng=random.Random(3),
        batch_size=1,
    )
    return ledger, clock, gateway, engine, flights


def statuses(ledger: FlightLedger, flights: list[str]) -> dict[str, int]:
    """How many flights are in each status."""
    counts: dict[str, int] = {}
    for f in flights:
        status = ledger.find(SCHOOL, f).status.value
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_a_stop_request_ends_the_pass_between_calls() -> None:
    """should_stop (SIGTERM / --max-seconds) stops sending after the call in flight."""
    ledger, _, gateway, engine, flights = setup(10)
    engine.should_stop = lambda: len(gateway.calls) >= 3
    engine.run_pass(SCHOOL)
    assert len(gateway.calls) == 3
    assert statuses(ledger, flights) == {"synced": 3, "pending": 7}
    engine.should_stop = lambda: False
    engine.run_pass(SCHOOL)
    assert statuses(ledger, flights) == {"synced": 10} and gateway.invoice_count == 10


def test_a_realm_that_keeps_failing_opens_the_breaker_and_probes_once() -> None:
    """5 outage calls in a row open the realm's breaker; after the cooldown one probe goes out."""
    ledger, clock, gateway, engine, flights = setup(20)
    for f in flights:
        gateway.then(ledger.find(SCHOOL, f).id, *["transient"] * 3)
    engine.run_pass(SCHOOL)
    assert len(gateway.calls) == 5  # then the breaker opened: 15 flights never tried
    assert statuses(ledger, flights) == {"retrying": 5, "pending": 15}
    paused = engine.paused_until(SCHOOL)
    assert paused is not None and paused == T0 + timedelta(seconds=30)
    assert engine.run_pass(SCHOOL).skipped == "paused" and len(gateway.calls) == 5

    clock.advance(31)
    engine.run_pass(SCHOOL)  # half-open: one probe, it fails, open again for twice as long
    assert len(gateway.calls) == 6
    reopened = engine.paused_until(SCHOOL)
    assert reopened is not None and reopened == clock.now() + timedelta(seconds=60)

    for f in flights:
        gateway.script.pop(ledger.find(SCHOOL, f).id, None)  # QuickBooks is back
    for _ in range(20):
        clock.advance(600)
        engine.run_pass(SCHOOL)
    assert statuses(ledger, flights) == {"synced": 20} and gateway.invoice_count == 20
    assert engine.breaker(SCHOOL).failures == 0 and not engine.breaker(SCHOOL).half_open


def test_breaker_cooldown_doubles_up_to_its_bound() -> None:
    """Each re-open doubles the cooldown up to max_seconds; an answer closes it."""
    breaker = CircuitBreaker(threshold=2, base_seconds=10, max_seconds=35)
    assert breaker.failed(T0) is None and breaker.failed(T0) == 10
    assert not breaker.allows(T0 + timedelta(seconds=9))
    assert breaker.allows(T0 + timedelta(seconds=10)) and breaker.half_open
    assert breaker.failed(T0) == 20
    assert breaker.allows(T0 + timedelta(seconds=20)) and breaker.failed(T0) == 35
    breaker.succeeded()
    assert breaker.opens == 0 and breaker.allows(T0)


class Beats:
    """A heartbeat store keeping every detail written."""

    def __init__(self) -> None:
        self.details: list[str] = []

    def beat(self, worker_id: str, at: Any, detail: str = "") -> None:
        """Keep the detail."""
        self.details.append(detail)


def test_a_worker_whose_every_pass_crashes_reports_unhealthy_and_gives_up() -> None:
    """Every pass crashing: logged, heartbeat 'unhealthy: ...', and --until-idle stops unhealthy."""
    ledger, _, _, engine, flights = setup(3)
    beats = Beats()

    def disk_full(school: str) -> int:
        raise OSError(28, "No space left on device")

    engine.run_school = disk_full  # type: ignore[method-assign,assignment]
    loop = WorkerLoop(
        engine, engine.view, FreeLocks(), catch_up=lambda: None, heartbeat=beats,  # type: ignore[arg-type]
        poll_seconds=0.001,
    )  # fmt: skip
    summary = loop.run(until_idle=True)
    assert not summary.healthy and "No space left on device" in summary.error
    assert loop.unhealthy_rounds == UNHEALTHY_ROUNDS_UNTIL_IDLE
    assert any(d.startswith("unhealthy: OSError") for d in beats.details)
    assert statuses(ledger, flights) == {"pending": 3}  # nothing lost

    del engine.run_school  # the disk has room again
    healthy = loop.run(until_idle=True)
    assert healthy.healthy and healthy.idle and beats.details[-1] == "healthy"
    assert statuses(ledger, flights) == {"synced": 3}


def test_a_catch_up_that_cannot_read_the_log_is_unhealthy_too() -> None:
    """The database gone (catch-up raises): unhealthy, not 'idle' with work left."""
    _, _, _, engine, _ = setup(1)

    def gone() -> None:
        raise ConnectionError("database is gone")

    loop = WorkerLoop(engine, engine.view, FreeLocks(), catch_up=gone, poll_seconds=0.001)
    summary = loop.run(until_idle=True)
    assert not summary.healthy and not summary.idle and "database is gone" in summary.error


def test_the_checklist_says_when_the_running_worker_is_unhealthy() -> None:
    """A recent heartbeat that says 'unhealthy' fails the worker line with the error."""
    from domain.checklist import build_checklist

    ledger, _, _, _, _ = setup(1)
    common: dict[str, Any] = {
        "connection": ledger.connection(SCHOOL),
        "mappings": ledger.mappings(SCHOOL),
        "problems": [],
        "auto_invoice": True,
        "worker_last_seen": T0,
        "now": T0,
    }
    fine = {i.item: i for i in build_checklist(**common)}["Worker seen recently"]
    sick = {i.item: i for i in build_checklist(**common, worker_unhealthy="OSError: disk full")}[
        "Worker seen recently"
    ]
    assert fine.ok and not sick.ok and "OSError: disk full" in sick.fix


def test_worker_command_exits_1_when_every_pass_crashes(tmp_path: Any, monkeypatch: Any) -> None:
    """`worker --until-idle` whose passes all crash exits 1 saying so, not 0 with work pending."""
    import json

    from typer.testing import CliRunner

    import workers.cli
    from services.push_pass import SyncEngine as Engine
    from tests.factories import flight, jsonl
    from workers.logging import configure_logging

    configure_logging()  # as main() does: logs to stderr, stdout carries only the JSON
    workers.cli._register_commands()
    db = f"sqlite:///{tmp_path / 'w.db'}"
    runner = CliRunner()
    argv = ["--db", db, "--json"]
    lines = jsonl([flight("F-1"), flight("F-2")])
    assert (
        runner.invoke(
            workers.cli.app, [*argv, "record", "flight-ended", "-"], input=lines
        ).exit_code
        == 0
    )

    def disk_full(self: Engine, school: str) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Engine, "run_school", disk_full)
    monkeypatch.setattr("workers.worker_loop.UNHEALTHY_BACKOFF_MAX", 0.01)
    done = runner.invoke(workers.cli.app, [*argv, "worker", "--until-idle"])
    assert done.exit_code == 1
    out = json.loads(done.stdout)
    assert "worker unhealthy" in out["error"] and "No space left on device" in out["error"]
    assert out["pending"] == 2
