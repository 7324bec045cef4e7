"""A worker's pass reads the view once and the log once (FlightLedger.pass_reads), and what it
reads is what repository.get would give, also after another process wrote meanwhile."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.views import open_view
from domain.application import FlightLedger
from domain.financial_event import FinancialEvent, Status
from domain.ids import settings_id
from domain.ports import BulkEventReads, FixedClock
from services.push_pass import SyncEngine
from tests.fakes import FakeAccountingGateway, connect, map_everything
from tests.fakes import record_flights as record
from workers.bootstrap import open_ledger
from workers.projector import Projector
from workers.runtime import _cache_aggregates

SCHOOL = "default"


@pytest.fixture
def worker_ledger(db_url: str, clock: FixedClock) -> Iterator[FlightLedger]:
    """The log as a worker opens it: aggregates cached between passes, fast-forwarded."""
    app = open_ledger(db_url, clock=clock)
    _cache_aggregates(app)
    yield app
    app.close()


def counting(obj: Any, names: tuple[str, ...], calls: Counter[str]) -> None:
    """Count calls of these methods of one object (they still run)."""
    for name in names:
        method: Callable[..., Any] = getattr(obj, name)

        def wrapper(
            *args: Any, _m: Callable[..., Any] = method, _n: str = name, **kwargs: Any
        ) -> Any:
            calls[_n] += 1
            return _m(*args, **kwargs)

        setattr(obj, name, wrapper)


def test_aggregates_are_what_the_repository_gives_after_another_process_wrote(
    worker_ledger: FlightLedger, db_url: str, clock: FixedClock
) -> None:
    """Cached, changed by another process, new and missing: aggregates() answers each as
    repository.get does, hands out copies, and leaves the missing out."""
    assert isinstance(worker_ledger.recorder, BulkEventReads)
    first, second = record(worker_ledger, 2, school=SCHOOL)
    ids = [worker_ledger.find(SCHOOL, r).id for r in (first, second)]
    missing = settings_id(SCHOOL)  # never saved
    found = worker_ledger.aggregates([*ids, missing])
    assert sorted(found) == sorted(ids)
    found[ids[0]].dismiss(operator="t", note="changed, never saved", at=clock.now())

    other = open_ledger(db_url, clock=clock)  # another process appends to the first event
    try:
        event = other.financial_event(ids[0])
        event.dismiss(operator="other", note="dismissed elsewhere", at=clock.now())
        other.save(event)
        (third,) = record(other, 1, school=SCHOOL, start=3)
        new_id = other.find(SCHOOL, third).id
    finally:
        other.close()

    again = worker_ledger.aggregates([ids[0], ids[1], new_id, missing])
    assert sorted(again) == sorted([*ids, new_id])
    for aggregate_id, aggregate in again.items():
        expected: FinancialEvent = worker_ledger.repository.get(aggregate_id)
        assert (aggregate.version, aggregate.status) == (expected.version, expected.status)
    assert again[ids[0]].status == Status.DISMISSED and again[ids[0]].version == 2
    assert again[ids[1]].status == Status.PENDING and again[ids[1]].version == 1
    assert again[ids[0]] is not worker_ledger.aggregates([ids[0]])[ids[0]]


def test_a_pass_reads_the_view_once_and_the_log_once(
    worker_ledger: FlightLedger, db_url: str
) -> None:
    """Three flights of a mapped school: one view query, one log read for the settings,
    connection, mappings and all three events, two saves (PushStarted, outcomes); synced."""
    connect(worker_ledger, SCHOOL)
    map_everything(worker_ledger, SCHOOL)
    refs = record(worker_ledger, 3, school=SCHOOL)
    view = open_view(db_url)
    try:
        Projector(worker_ledger, view).catch_up()
        gateway = FakeAccountingGateway()
        engine = SyncEngine(worker_ledger, view, lambda school: gateway)
        calls: Counter[str] = Counter()
        counting(
            worker_ledger.recorder,
            ("select_events", "select_events_after", "insert_events"),
            calls,
        )
        counting(view, ("list", "get"), calls)
        report = engine.run_school(SCHOOL)
        assert report.outcomes.get("synced") == 3
        assert calls == Counter({"list": 1, "select_events_after": 1, "insert_events": 2})
        statuses = {worker_ledger.find(SCHOOL, r).status for r in refs}
        assert statuses == {Status.SYNCED} and gateway.invoice_count == 3
    finally:
        view.close()


def test_a_pass_recovers_an_orphan_from_the_same_reads(
    worker_ledger: FlightLedger, db_url: str, clock: FixedClock
) -> None:
    """An event left syncing by a dead worker: run_school makes it uncertain and resolves it
    in the same pass, from the same reads (the view once, the log once): one invoice."""
    connect(worker_ledger, SCHOOL)
    map_everything(worker_ledger, SCHOOL)
    (ref,) = record(worker_ledger, 1, school=SCHOOL)
    event = worker_ledger.find(SCHOOL, ref)
    event.start_push(
        request_id="r-1", doc_number="FL-F-1", batched=False, actor="dead worker", at=clock.now()
    )
    worker_ledger.save(event)
    view = open_view(db_url)
    try:
        projector = Projector(worker_ledger, view)
        projector.catch_up()
        gateway = FakeAccountingGateway()
        engine = SyncEngine(worker_ledger, view, lambda school: gateway)
        calls: Counter[str] = Counter()
        counting(worker_ledger.recorder, ("select_events", "select_events_after"), calls)
        counting(view, ("list",), calls)
        engine.run_school(SCHOOL)
        assert calls == Counter({"list": 1, "select_events_after": 1})
        resolved = worker_ledger.find(SCHOOL, ref)
        assert resolved.status == Status.SYNCED
        assert resolved.attempts == 2  # the dead worker's attempt, then this pass's
        assert gateway.invoice_count == 1
        calls.clear()
        projector.catch_up()
        engine.run_school(SCHOOL)  # nothing left: no second invoice
        assert gateway.invoice_count == 1
    finally:
        view.close()
