"""Bulk import: `flightledger record flight-ended FILE` against plain use of eventsourcing.

Both sides run as a fresh subprocess timed from process start to exit, read the same JSON-lines
file and validate every line with the same parser (domain.records.parse_line). They differ only
in how the log is written:
- baseline: FinancialEvent aggregates built with the library and saved with `app.save(*batch)` in
  batches of 500, through the library's default recorders and mapper (eventsourcing.sqlite /
  eventsourcing.postgres);
- flightledger: the CLI (chunks of 5,000 lines validated and encoded by worker processes while the
  main process appends the previous chunk in one transaction; the library's Mapper encodes the
  creation events alone, no aggregate object; bulk recorders from adapters/, COPY on PostgreSQL).

A hand-written JSON writer for creation events (adapters/eventstore_mapper.py) was deleted: with
the library's Mapper the CLI still met the goal (SQLite 1.60x and 1.71x at load ~3, against 1.81x
and 2.09x with the writer; PostgreSQL 1.90x against 2.09x; one SQLite run at load 8.2 gave 1.06x
against 1.82x at load 5.3, and the full run after the deletion 1.40x / PostgreSQL 1.74x at load
~5 - other work shared the 2 cores; the writer's margin is gone, the goal is not).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    ROOT,
    machine,
    postgres_schema,
    postgres_unavailable,
    run_cli,
    write_flights,
)

BASELINE_BATCH = 500
SCHOOL = "bench"


def baseline_import(db_url: str, path: str) -> int:
    """Plain use of the library: validate, build aggregates, app.save in batches of 500."""
    from adapters.persistence import ensure_schema, parse_database_url
    from domain.application import FlightLedger
    from domain.records import RecordKind, parse_line

    db = parse_database_url(db_url)
    ensure_schema(db)
    env = db.eventsourcing_env()
    env["PERSISTENCE_MODULE"] = (
        "eventsourcing.postgres" if db.is_postgres else "eventsourcing.sqlite"
    )
    app = FlightLedger(env=env)
    count = 0
    batch = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            record = parse_line(RecordKind.FLIGHT_ENDED, line)
            batch.append(app.new_financial_event(SCHOOL, record, actor="system"))
            if len(batch) == BASELINE_BATCH:
                app.save(*batch)
                count += len(batch)
                batch = []
    if batch:
        app.save(*batch)
        count += len(batch)
    app.close()
    return count


def _time_baseline(db_url: str, path: Path) -> float:
    import subprocess

    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bench.bench_import", "baseline", db_url, str(path)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return time.perf_counter() - start


def _time_cli(db_url: str, path: Path) -> float:
    return run_cli(
        ["--db", db_url, "--school", SCHOOL, "--json", "record", "flight-ended", str(path)]
    )


def _row(backend: str, count: int, baseline: float, ours: float) -> str:
    return (
        f"| {backend} | {count:,} | {baseline:.2f} s | {count / baseline:,.0f}/s "
        f"| {ours:.2f} s | {count / ours:,.0f}/s | **{baseline / ours:.2f}x** |"
    )


def run(quick: bool = False) -> str:
    """Measure both sides on SQLite and PostgreSQL; return the Markdown section."""
    count = 2_000 if quick else 100_000
    rows: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp)
        flights = write_flights(folder / "flights.jsonl", count)
        base_url = f"sqlite:///{folder / 'baseline.db'}"
        ours_url = f"sqlite:///{folder / 'flightledger.db'}"
        rows.append(
            _row("SQLite", count, _time_baseline(base_url, flights), _time_cli(ours_url, flights))
        )
        reason = postgres_unavailable()
        if reason is None:
            with postgres_schema("bench_base") as pg_base, postgres_schema("bench_ours") as pg_ours:
                rows.append(
                    _row(
                        "PostgreSQL",
                        count,
                        _time_baseline(pg_base, flights),
                        _time_cli(pg_ours, flights),
                    )
                )
        else:
            notes.append(f"PostgreSQL not measured: {reason}")
    lines = [
        "## Bulk import (`record flight-ended`)",
        "",
        f"{count:,} flight-ended records (2-3 charges each) in one JSON-lines file, imported "
        "into an empty log. Both sides run as a new process, timed from process start to exit, "
        "and validate every line with the same parser; the baseline builds FinancialEvent "
        f"aggregates and calls `app.save(*aggregates)` in batches of {BASELINE_BATCH} with the "
        "library's default recorders and mapper; flightledger is the real CLI "
        "(`workers/bulk_import.py`: 2 worker processes validate and encode chunks of 5,000 lines "
        "while the main process appends the previous chunk in one transaction; "
        "`adapters/eventstore_sqlite.py` executemany, "
        "`adapters/eventstore_postgres.py` COPY under the library's table lock + NOTIFY, "
        "the library's Mapper on the creation events alone). Measured in the same run, one after "
        "the other.",
        "",
        "| backend | records | baseline | baseline rate | flightledger | flightledger rate "
        "| speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Goal: >= 1.25x. Machine: {machine()}; PostgreSQL on 127.0.0.1 (same machine); "
        f"load average at the end {os.getloadavg()[0]:.2f} (other work shares the 2 cores)."
        + (" Quick smoke run: figures are not meaningful." if quick else ""),
    ]
    for note in notes:
        lines.extend(["", note])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "baseline":
        baseline_import(sys.argv[2], sys.argv[3])
    else:
        print(run(quick="--quick" in sys.argv))
