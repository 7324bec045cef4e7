"""Two workers against one PostgreSQL: schools are shared out, nothing is pushed twice."""

from __future__ import annotations

import threading

import pytest

from adapters.persistence import parse_database_url
from adapters.realm_locks import open_realm_locks
from adapters.views import open_view
from domain.application import FlightLedger
from domain.ports import FixedClock
from projections.view import ProjectedView
from services.push_pass import SyncEngine
from tests.fakes import T0, FakeAccountingGateway, ready_school, record_flights
from workers.bootstrap import open_ledger
from workers.projector import Projector
from workers.worker_loop import WorkerLoop

pytestmark = pytest.mark.timeout(120)
SCHOOLS = [f"school-{i}" for i in range(6)]


def test_two_workers_share_schools_without_duplicates(pg_url: str) -> None:
    """Two worker loops on 6 schools x 10 flights: every flight synced, one create each."""
    setup = open_ledger(pg_url, clock=FixedClock(T0))
    for school in SCHOOLS:
        ready_school(setup, school)
        record_flights(setup, 10, school)
    setup.close()
    gateways = {s: FakeAccountingGateway() for s in SCHOOLS}
    lock = threading.Lock()
    passes: list[int] = []

    db = parse_database_url(pg_url)
    # opened one after the other: concurrent CREATE TABLE IF NOT EXISTS races in PostgreSQL
    opened = [(open_ledger(db, clock=FixedClock(T0)), open_view(db)) for _ in range(2)]

    def work(ledger: FlightLedger, view: ProjectedView) -> None:
        locks = open_realm_locks(db)
        try:
            engine = SyncEngine(ledger, view, gateways.__getitem__, batch_size=4)
            loop = WorkerLoop(
                engine, view, locks, catch_up=Projector(ledger, view).catch_up, poll_seconds=0.05
            )
            summary = loop.run(until_idle=True, max_seconds=60)
            with lock:
                passes.append(summary.passes)
        finally:
            locks.close()
            view.close()
            ledger.close()

    threads = [threading.Thread(target=work, args=pair) for pair in opened]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check = open_ledger(pg_url, clock=FixedClock(T0))
    try:
        for school in SCHOOLS:
            assert {e.status.value for e in check.iter_financial_events(school)} == {"synced"}
            assert gateways[school].invoice_count == 10
            created = sum(n for op, n in gateways[school].calls if op in ("batch", "invoice"))
            assert created == 10
    finally:
        check.close()
    assert len(passes) == 2
