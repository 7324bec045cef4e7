"""A from-empty load (`view rebuild`; also callable on any emptied view) yields
exactly the rows and counters that incremental projection of the same log does (SQLite and
PostgreSQL): the load counts by GROUP BY and indexes once, apply_batch keeps both up batch by
batch."""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from adapters import sqlite_view
from adapters.persistence import parse_database_url
from adapters.views import open_view
from domain.application import FlightLedger
from domain.financial_event import FailureCategory, TransitionRefused
from domain.ports import FixedClock, ReasonCode
from domain.records import RecordError, RecordKind, parse_correction_line, parse_line
from projections import financial_events
from projections.financial_events import USAGE_EXAMPLES, InMemoryFinancialEventView, decode_events
from projections.view import ProjectedView, TrackingConflict
from tests.factories import amendment, cancellation, flight, invoice_request, payment
from workers.projector import Projector, decode_changes, verify_audit_chain

SCHOOLS = ("north", "south", "west")
STUDENTS = tuple(f"S-{n}" for n in range(1, 7))
REASONS: tuple[tuple[ReasonCode, list[str]], ...] = (
    (ReasonCode.MISSING_MAPPING, ["charge:fuel"]),
    (ReasonCode.MISSING_MAPPING, ["charge:fuel", "student:S-2"]),
    (ReasonCode.MISSING_MAPPING, ["student:S-3", "student:S-3"]),  # a key twice: counted once
    (ReasonCode.INACTIVE_MAPPING, ["charge:aircraft_rental"]),
    (ReasonCode.VALIDATION, []),
    (ReasonCode.DUPLICATE_DOC_NUMBER, []),
)


@pytest.fixture
def view(db_url: str, ledger: FlightLedger) -> Iterator[ProjectedView]:
    """The view next to the log, on both backends."""
    opened = open_view(db_url)
    yield opened
    opened.close()


def _record(ledger: FlightLedger, school: str, n: int, rng: random.Random) -> str:
    """One new financial event of a random kind and student; its reference."""
    student = rng.choice(STUDENTS)
    kind = rng.random()
    if kind < 0.7:
        ref = f"F-{n}"
        charges = [{"code": "aircraft_rental", "quantity": "1.2", "rate": "165.00"}]
        if rng.random() < 0.4:
            charges.append({"code": "fuel", "quantity": "1", "rate": "20.00"})
        line = json.dumps(flight(ref, student, charges=charges))
        ledger.record(school, parse_line(RecordKind.FLIGHT_ENDED, line))
    elif kind < 0.85:
        ref = f"P-{n}"
        line = json.dumps(payment(ref, student, payment_type=rng.choice(["card", "cash"])))
        ledger.record(school, parse_line(RecordKind.PAYMENT_RECEIVED, line))
    else:
        ref = f"R-{n}"
        line = json.dumps(invoice_request(ref, student))
        ledger.record(school, parse_line(RecordKind.INVOICE_REQUESTED, line))
    return ref


def _change(
    ledger: FlightLedger, clock: FixedClock, school: str, ref: str, rng: random.Random
) -> None:
    """One random transition of an event (refused ones are skipped)."""
    at = clock.at
    op = rng.choice(
        ["push", "sync", "sync", "fail", "action", "action", "retry", "dismiss", "correct"]
    )
    if op == "correct":
        if not ref.startswith("F-"):
            return
        if rng.random() < 0.6:
            changed = amendment(ref, hours=str(rng.choice(["0.8", "1.5", "2.0"])))
            changed["student"] = {"id": rng.choice(STUDENTS), "name": f"Renamed {rng.random():.3f}"}
            line, kind = json.dumps(changed), RecordKind.FLIGHT_AMENDED
        else:
            line, kind = json.dumps(cancellation(ref)), RecordKind.FLIGHT_CANCELLED
        with contextlib.suppress(RecordError):  # e.g. a flight being sent right now
            ledger.record_correction(school, parse_correction_line(kind, line))
        return
    event = ledger.find(school, ref)
    try:
        if op in ("push", "sync"):
            event.start_push(request_id=ref, doc_number=ref, batched=False, actor="w", at=at)
        if op == "sync":
            event.mark_synced(qbo_id=str(rng.randint(1, 999)), doc_number=ref, actor="w", at=at)
        elif op == "fail":
            category = rng.choice(list(FailureCategory))
            event.mark_failed(category=category, code="500", message="ISE", actor="w", at=at)
        elif op == "action":
            code, missing = rng.choice(REASONS)
            event.require_action(
                reason_code=code, message=f"fix {ref}", missing=missing, actor="w", at=at
            )
        elif op == "retry":
            event.request_retry(operator="ops", scope="all", at=at)
        elif op == "dismiss":
            event.dismiss(operator="ops", note="not billable", at=at)
    except TransitionRefused:
        return
    ledger.save(event)


def _build_and_project_incrementally(
    ledger: FlightLedger, view: ProjectedView, clock: FixedClock, seed: int
) -> None:
    """A log of ~150 events in three schools, projected batch by batch (apply_batch) while
    it grows, in small random batches."""
    rng = random.Random(seed)
    refs: dict[str, list[str]] = {s: [] for s in SCHOOLS}
    projector = Projector(ledger, view)
    n = 0
    for _ in range(12):
        for _ in range(rng.randint(3, 8)):
            school = rng.choice(SCHOOLS)
            n += 1
            refs[school].append(_record(ledger, school, n, rng))
        for _ in range(rng.randint(4, 12)):
            school = rng.choice(SCHOOLS)
            if refs[school]:
                clock.advance(1)
                _change(ledger, clock, school, rng.choice(refs[school]), rng)
        size = rng.randint(1, 9)
        while projector.run_batch(size):
            pass
    for school in SCHOOLS:  # one row of each school waits on the same key named twice
        ref = _record(ledger, school, n := n + 1, rng)
        event = ledger.find(school, ref)
        code, missing = REASONS[2]
        event.require_action(
            reason_code=code, message="map", missing=missing, actor="w", at=clock.at
        )
        ledger.save(event)
    while projector.run_batch(5):
        pass
    assert view.max_tracking_id() == ledger.recorder.max_notification_id()


def _state(view: ProjectedView) -> dict[str, Any]:
    """Everything the view reads back: rows, every counter, names, schools, position."""
    state: dict[str, Any] = {
        "position": view.max_tracking_id(),
        "schools": view.schools(),
        "with_work": view.schools_with_work(),
    }
    for school in (*SCHOOLS, "nowhere"):
        rows = view.list(school)
        state[school] = {
            "rows": rows,
            "counts": view.counts(school),
            "by_kind": view.counts_by_kind(school),
            "reason_groups": view.reason_groups(school),
            "reason_counts": view.reason_counts(school),
            "usage": [(u.key, u.unsent, u.total) for u in view.usage(school)],
            "names": view.student_names(school, [*STUDENTS, "S-nobody"]),
        }
    return state


def _stored_counters(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The counter tables as stored (rows with a zero count left out: batch by batch leaves
    them behind, a load never writes them), read straight from the database."""
    statements = {
        "counts": f"SELECT school, status, kind, n FROM {sqlite_view.COUNTS} WHERE n <> 0",
        "reasons": f"SELECT school, reason_code, part, n FROM {sqlite_view.REASONS} WHERE n <> 0",
        "usage": f"SELECT school, key, unsent, total FROM {sqlite_view.USAGE} WHERE total <> 0",
        "students": f"SELECT school, student_id, name FROM {sqlite_view.STUDENTS}",
    }
    db = parse_database_url(url)
    found: dict[str, list[tuple[Any, ...]]] = {}
    if db.is_postgres:
        with psycopg.connect(db.psycopg_conninfo()) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(db.schema)))
            for name, statement in statements.items():
                found[name] = sorted(tuple(r) for r in conn.execute(statement).fetchall())
        return found
    with contextlib.closing(sqlite3.connect(db.path)) as conn:
        for name, statement in statements.items():
            found[name] = sorted(tuple(r) for r in conn.execute(statement).fetchall())
    return found


def _reference_usage(ledger: FlightLedger, school: str) -> list[Any]:
    """The usage counters recounted from the log (examples: the oldest unsent references)."""
    reference = InMemoryFinancialEventView()
    for change in decode_events(ledger.mapper, ledger.recorder.select_notifications(1, 10_000)):
        reference.apply(*change)
    return reference.usage(school)


def _batches(ledger: FlightLedger, size: int) -> Iterator[tuple[list[Any], Any]]:
    """The whole log as (changes, notifications) pages of `size`, as a rebuild reads it."""
    position = 0
    while notifications := ledger.recorder.select_notifications(start=position + 1, limit=size):
        yield decode_changes(ledger, notifications), notifications
        position = notifications[-1].id


def _no_batches(*args: Any, **kwargs: Any) -> int:
    raise AssertionError("a load from empty must not go through apply_batch")


@pytest.mark.parametrize("seed", [3, 7])
def test_load_from_empty_equals_incremental_projection(
    db_url: str,
    ledger: FlightLedger,
    view: ProjectedView,
    clock: FixedClock,
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows, status x kind counts, reason groups and missing keys, usage counts, student names,
    schools with work and position after a rebuild (several batches and one), and after a first
    catch-up into an emptied view, equal what batch-by-batch projection kept up."""
    _build_and_project_incrementally(ledger, view, clock, seed)
    incremental = _state(view)
    stored = _stored_counters(db_url)
    assert any(incremental[s]["reason_groups"] for s in SCHOOLS)  # the log reaches every counter
    assert any(g.missing for s in SCHOOLS for g in incremental[s]["reason_groups"])
    assert any(n.startswith("Renamed") for s in SCHOOLS for n in incremental[s]["names"].values())
    assert {s for s in SCHOOLS for (status, _) in incremental[s]["by_kind"]} == set(SCHOOLS)
    monkeypatch.setattr(view, "apply_batch", _no_batches)

    # batches of 4 holding at most 3 rows: rows written, read back and written again; then
    # one batch, every row held until the end
    for batch_size, held in ((4, 3), (10_000, financial_events.LOAD_ROWS_IN_MEMORY)):
        monkeypatch.setattr(financial_events, "LOAD_ROWS_IN_MEMORY", held)
        assert Projector(ledger, view).rebuild(batch_size) == incremental["position"]
        assert _state(view) == incremental
        assert _stored_counters(db_url) == stored
    view.drop()
    view.load(_batches(ledger, 7), replace=False)  # the load into an emptied view
    assert view.max_tracking_id() == incremental["position"]
    assert _state(view) == incremental
    assert _stored_counters(db_url) == stored

    for school in SCHOOLS:  # examples: each key's oldest unsent references, as a recount
        loaded = view.usage(school)
        assert loaded == _reference_usage(ledger, school)
        assert all(len(u.examples) == min(u.unsent, USAGE_EXAMPLES) for u in loaded)
    assert verify_audit_chain(ledger, view).ok


def test_a_live_catch_up_never_loads_in_one_transaction(
    ledger: FlightLedger, view: ProjectedView, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's or serve's first catch-up into an empty view goes batch by batch (short
    transactions beside the API's writes), never through the whole-log load."""
    rng = random.Random(9)
    for n in range(5):
        _record(ledger, "north", n, rng)

    def no_load(*args: object, **kwargs: object) -> int:
        raise AssertionError("a live catch-up must not hold one transaction for the whole log")

    monkeypatch.setattr(view, "load", no_load)
    assert Projector(ledger, view).catch_up(2) == 5
    assert view.counts("north") == {"pending": 5}


def test_the_load_refuses_a_view_another_projector_moved(
    ledger: FlightLedger, view: ProjectedView, clock: FixedClock
) -> None:
    """A view that another projector moved is left to apply_batch: the load refuses it and
    changes nothing; an empty log loads nothing."""
    assert Projector(ledger, view).catch_up() == 0
    assert view.max_tracking_id() == 0
    rng = random.Random(5)
    for n in range(3):
        _record(ledger, "north", n, rng)
    Projector(ledger, view).run_batch(2)
    before = _state(view)
    assert view.load(iter([]), replace=False) == 0  # nothing to load: no conflict either
    notifications = ledger.recorder.select_notifications(start=1, limit=10)
    batch = (decode_changes(ledger, notifications), notifications)
    with pytest.raises(TrackingConflict, match="from-empty load expected 0"):
        view.load(iter([batch]), replace=False)
    assert _state(view) == before
    assert Projector(ledger, view).catch_up() == 1
    assert view.counts("north") == {"pending": 3}
