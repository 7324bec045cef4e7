"""Bulk import through worker processes writes exactly what the single-process path writes."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.application import FlightLedger
from domain.ports import FixedClock
from domain.records import RecordError, RecordKind, parse_line
from tests.factories import flight
from workers import bulk_import
from workers.bootstrap import open_ledger

LINES = 20_000


def mixed_file() -> str:
    """20,000 lines: valid flights, rejected lines, blank lines and in-file duplicates."""
    lines: list[str] = []
    for n in range(LINES):
        if n % 997 == 13:
            lines.append("{not json\n")
        elif n % 1499 == 7:
            lines.append(json.dumps(flight(f"F-{n}", hobbs={"start": "5.0", "end": "1.0"})) + "\n")
        elif n % 1777 == 5:
            lines.append("   \n")
        elif n % 613 == 600:
            lines.append(json.dumps(flight(f"F-{n - 400}")) + "\n")  # seen earlier in the file
        else:
            lines.append(json.dumps(flight(f"F-{n}", student=f"S-{n % 50}")) + "\n")
    return "".join(lines)


def reference_import(ledger: FlightLedger, text: str) -> dict[str, Any]:
    """The pre-pipeline command: parse line by line, record_batch every 5,000 records."""
    rejected: list[dict[str, Any]] = []
    recorded = duplicates = 0
    batch = []
    for number, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        try:
            batch.append(parse_line(RecordKind.FLIGHT_ENDED, line))
        except RecordError as exc:
            rejected.append({"line": number, "field": exc.field, "reason": exc.reason})
        if len(batch) == 5000:
            result = ledger.record_batch("default", batch)
            recorded, duplicates, batch = (
                recorded + result.recorded,
                duplicates + result.duplicates,
                [],
            )
    result = ledger.record_batch("default", batch)
    recorded, duplicates = recorded + result.recorded, duplicates + result.duplicates
    return {"recorded": recorded, "duplicates": duplicates, "rejected": rejected}


def log_rows(ledger: FlightLedger) -> list[tuple[Any, ...]]:
    """Every stored event, in log order: id, version, topic and state bytes."""
    rows = ledger.recorder.select_notifications(start=1, limit=100_000)
    return [(str(n.originator_id), n.originator_version, n.topic, n.state) for n in rows]


def run(db: str, clock: FixedClock, text: str, *, pipeline: bool | None) -> tuple[Any, Any]:
    """Seed 20 flights, import text (workers, one process, or the old path): summary and log."""
    pool = bulk_import.start_pool() if pipeline else None
    ledger = open_ledger(db, clock=clock)
    try:
        seed = [
            parse_line(RecordKind.FLIGHT_ENDED, json.dumps(flight(f"F-{n}"))) for n in range(20)
        ]
        ledger.record_batch("default", seed)
        if pipeline is None:
            summary = reference_import(ledger, text)
        else:
            summary = bulk_import.import_lines(
                ledger,
                RecordKind.FLIGHT_ENDED,
                io.BytesIO(text.encode()),
                school="default",
                actor="system",
                pool=pool,
            ).summary()
        return summary, log_rows(ledger)
    finally:
        ledger.close()
        if pool is not None:
            pool.terminate()
            pool.join()


@pytest.fixture
def fresh_db(db_url: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Make more empty databases of the same backend (files, or schemas dropped afterwards)."""
    schemas: list[str] = []

    def make(name: str) -> str:
        if db_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / (name + '.db')}"
        schema = db_url.split("schema=")[1].split("&", maxsplit=1)[0]
        schemas.append(f"{schema}_{name}")
        return db_url.replace(f"schema={schema}", f"schema={schemas[-1]}")

    yield make
    if schemas:
        import psycopg
        from psycopg import sql

        from adapters.persistence import parse_database_url

        with psycopg.connect(parse_database_url(db_url).psycopg_conninfo(), autocommit=True) as c:
            for schema in schemas:
                c.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def test_pipeline_matches_single_process_and_record_batch(
    db_url: str, fresh_db: Callable[[str], str], clock: FixedClock
) -> None:
    """Same summary (recorded, duplicates, rejected lines in order) and byte-identical log."""
    text = mixed_file()
    piped = run(db_url, clock, text, pipeline=True)
    single = run(fresh_db("single"), clock, text, pipeline=False)
    reference = run(fresh_db("reference"), clock, text, pipeline=None)
    assert piped == single == reference
    summary, rows = piped
    assert summary["duplicates"] > 20 and len(summary["rejected"]) > 20
    assert [r["line"] for r in summary["rejected"]] == sorted(
        r["line"] for r in summary["rejected"]
    )
    assert len(rows) == 20 + summary["recorded"]


def test_pool_workers_die_on_sigterm_whatever_this_process_handles() -> None:
    """Pool.terminate() relies on SIGTERM killing workers: they must not inherit our handler."""
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # as `worker` run in process did
    pool = bulk_import.start_pool()
    try:
        seen = pool.map(_signal_dispositions, range(8), chunksize=1)
        assert {pid for pid, _, _ in seen} - {os.getpid()}, "ran in worker processes"
        assert {(term, intr) for _, term, intr in seen} == {("default", "ignored")}
    finally:
        pool.terminate()
        pool.join()
        signal.signal(signal.SIGTERM, previous)


def _signal_dispositions(_: int) -> tuple[int, str, str]:
    """This process's pid and what SIGTERM and SIGINT do to it."""
    time.sleep(0.02)  # so every worker takes a share
    names = {signal.SIG_DFL: "default", signal.SIG_IGN: "ignored"}
    term, intr = (signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT))
    return os.getpid(), names.get(term, "handled"), names.get(intr, "handled")  # type: ignore[call-overload]
