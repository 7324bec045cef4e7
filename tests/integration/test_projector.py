"""The batched projector: incremental equals rebuild, crash safety, following the log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.persistence import parse_database_url
from adapters.views import open_view
from domain.application import FlightLedger
from domain.financial_event import FailureCategory, TransitionRefused
from domain.ports import FixedClock, ReasonCode
from domain.records import RecordKind, parse_line
from projections.view import EventRow, ProjectedView
from tests.factories import flight
from workers.projector import Projector

OPERATIONS = (
    "start_push",
    "mark_synced",
    "transient",
    "exhausted",
    "uncertain",
    "require_action",
    "request_retry",
    "dismiss",
    "project",
)


@pytest.fixture
def view(db_url: str, ledger: FlightLedger) -> Iterator[ProjectedView]:
    """The view next to the log, on both backends."""
    opened = open_view(db_url)
    yield opened
    opened.close()


def _record(ledger: FlightLedger, school: str, *flight_ids: str) -> None:
    records = [parse_line(RecordKind.FLIGHT_ENDED, json.dumps(flight(f))) for f in flight_ids]
    ledger.record_batch(school, records)


def _apply(ledger: FlightLedger, clock: FixedClock, school: str, ref: str, op: str) -> None:
    event = ledger.find(school, ref)
    at = clock.at
    try:
        if op == "start_push":
            event.start_push(request_id=ref, doc_number=ref, batched=False, actor="w", at=at)
        elif op == "mark_synced":
            event.mark_synced(qbo_id="1", doc_number=ref, actor="w", at=at)
        elif op in ("transient", "exhausted", "uncertain"):
            event.mark_failed(
                category=FailureCategory(op), code="500", message=f"{op} x", actor="w", at=at
            )
        elif op == "require_action":
            event.require_action(
                reason_code=ReasonCode.MISSING_MAPPING,
                message=f"Map {ref}",
                missing=[f"charge:{ref}"],
                actor="w",
                at=at,
            )
        elif op == "request_retry":
            event.request_retry(operator="ops", scope="all", at=at)
        elif op == "dismiss":
            event.dismiss(operator="ops", note="not billable", at=at)
    except TransitionRefused:
        return
    ledger.save(event)


def _snapshot(view: ProjectedView, school: str) -> tuple[list[EventRow], dict[str, int]]:
    return view.list(school), view.counts(school)


_examples = iter(range(10**6))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(OPERATIONS), st.integers(1, 4)),
        max_size=30,
    )
)
def test_incremental_projection_equals_full_rebuild(
    ledger: FlightLedger,
    view: ProjectedView,
    clock: FixedClock,
    steps: list[tuple[int, str, int]],
) -> None:
    """After random domain operations projected in random batches, the view equals a rebuild
    from the whole log and the aggregates' own state."""
    school = f"s{next(_examples)}"
    refs = [f"F-{i}" for i in range(4)]
    _record(ledger, school, *refs)
    projector = Projector(ledger, view)
    for index, op, batch_size in steps:
        clock.advance(1)
        if op == "project":
            projector.catch_up(batch_size=batch_size)
        else:
            _apply(ledger, clock, school, refs[index], op)
    projector.catch_up(batch_size=7)
    incremental = _snapshot(view, school)
    projector.rebuild()
    assert _snapshot(view, school) == incremental
    for row in incremental[0]:
        aggregate = ledger.financial_event(row.id)
        assert (row.status, row.attempts, row.reason, row.reason_code, row.missing) == (
            aggregate.status.value,
            aggregate.attempts,
            aggregate.reason,
            aggregate.reason_code,
            tuple(aggregate.missing),
        )


class _Crash(RuntimeError):
    """Raised inside the write, after rows are written and before commit."""


def test_crash_mid_batch_loses_and_doubles_nothing(
    ledger: FlightLedger, view: ProjectedView, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A projector that dies before its batch commits leaves nothing; a restart then applies
    every event exactly once (attempts and counts equal a fresh rebuild)."""
    refs = [f"F-{i}" for i in range(20)]
    _record(ledger, "default", *refs)
    projector = Projector(ledger, view, batch_size=8)
    projector.catch_up()
    for ref in refs[:10]:
        for _ in range(2):
            _apply(ledger, clock, "default", ref, "start_push")
            _apply(ledger, clock, "default", ref, "transient")
    position = view.max_tracking_id()
    before = _snapshot(view, "default")

    def crash() -> None:
        raise _Crash

    monkeypatch.setattr(view, "_before_commit", crash)
    with pytest.raises(_Crash):
        projector.catch_up()
    assert view.max_tracking_id() == position
    assert _snapshot(view, "default") == before
    monkeypatch.undo()  # back to the class's own (no-op) seam

    restarted = Projector(ledger, view, batch_size=8)
    restarted.catch_up()
    after = _snapshot(view, "default")
    assert {r.attempts for r in after[0][:10]} == {2}
    restarted.rebuild()
    assert _snapshot(view, "default") == after
    assert after[1] == {"retrying": 10, "pending": 10}


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _follow(projector: Projector) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=projector.follow, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def test_follow_picks_up_new_events(ledger: FlightLedger, view: ProjectedView) -> None:
    """While following, events appended to the log reach the view (within a second)."""
    projector = Projector(ledger, view)
    stop, thread = _follow(projector)
    try:
        _record(ledger, "default", "F-1", "F-2")
        assert _wait_for(lambda: view.counts("default") == {"pending": 2})
        _record(ledger, "default", "F-3")
        assert _wait_for(lambda: view.counts("default") == {"pending": 3})
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_postgres_follow_survives_losing_its_listen_connection(
    pg_url: str, clock: FixedClock
) -> None:
    """When the LISTEN session is terminated, follow logs projector_reconnected, listens again
    and keeps the view caught up from its tracking position."""
    from workers.bootstrap import open_ledger

    ledger = open_ledger(pg_url, clock=clock)
    view = open_view(pg_url)
    projector = Projector(ledger, view)
    with structlog.testing.capture_logs() as logs:
        stop, thread = _follow(projector)
        try:
            assert _wait_for(lambda: projector.listener_pid is not None)
            first_pid = projector.listener_pid
            _record(ledger, "default", "F-1")
            assert _wait_for(lambda: view.counts("default") == {"pending": 1})
            db = parse_database_url(pg_url)
            with psycopg.connect(db.psycopg_conninfo(), autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (first_pid,))
            _record(ledger, "default", "F-2", "F-3")
            assert _wait_for(lambda: view.counts("default") == {"pending": 3})
            assert _wait_for(lambda: projector.listener_pid not in (None, first_pid), timeout=10.0)
            _record(ledger, "default", "F-4")
            assert _wait_for(lambda: view.counts("default") == {"pending": 4})
        finally:
            stop.set()
            thread.join(timeout=5)
            view.close()
            ledger.close()
    assert any(entry["event"] == "projector_reconnected" for entry in logs)
    assert projector.reconnects >= 1
