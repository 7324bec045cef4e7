"""A waiting worker wakes up on PostgreSQL's NOTIFY instead of sleeping out its poll."""

from __future__ import annotations

import threading
import time

import pytest

from adapters.persistence import parse_database_url
from adapters.realm_locks import open_realm_locks
from adapters.views import open_view
from domain.financial_event import Status
from domain.ports import FixedClock
from services.push_pass import SyncEngine
from tests.fakes import T0, FakeAccountingGateway, ready_school, record_flights
from workers.bootstrap import open_ledger
from workers.projector import Projector
from workers.worker_loop import WorkerLoop

pytestmark = pytest.mark.timeout(120)
LONG_POLL = 60.0  # far longer than the deadline below: only a NOTIFY can wake the worker


def test_new_flight_wakes_a_sleeping_worker(pg_url: str) -> None:
    """With a 60 s poll, a flight recorded while the worker sleeps is synced within seconds."""
    ledger = open_ledger(pg_url, clock=FixedClock(T0))
    ready_school(ledger)
    view = open_view(pg_url)
    ledger_db = parse_database_url(pg_url)
    locks = open_realm_locks(ledger_db)
    gateway = FakeAccountingGateway()
    projector = Projector(ledger, view)
    loop = WorkerLoop(
        SyncEngine(ledger, view, lambda _school: gateway),
        view,
        locks,
        catch_up=projector.catch_up,
        poll_seconds=LONG_POLL,
        listen=lambda: view.listen(projector.channel),
    )
    stop = threading.Event()
    worker = threading.Thread(target=loop.run, kwargs={"stop": stop, "max_seconds": 90})
    worker.start()
    try:
        time.sleep(1.0)  # the worker has found nothing to do and is waiting
        writer = open_ledger(ledger_db, clock=FixedClock(T0))
        record_flights(writer, 3)
        writer.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and gateway.invoice_count < 3:
            time.sleep(0.1)
        assert gateway.invoice_count == 3
        rows = view.list("default")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(r.status != Status.SYNCED for r in rows):
            time.sleep(0.1)
            rows = view.list("default")
        assert [r.status for r in rows] == [Status.SYNCED] * 3
    finally:
        stop.set()
        writer_wake = open_ledger(pg_url, clock=FixedClock(T0))
        writer_wake.map_charge("default", "wake", "1", operator="test")  # any append wakes it
        writer_wake.close()
        worker.join(timeout=30)
        locks.close()
        view.close()
        ledger.close()
    assert not worker.is_alive()
