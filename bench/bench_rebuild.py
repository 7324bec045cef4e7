"""Rebuild of the financial-event view vs a plain read-and-decode of the same log."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from adapters.persistence import parse_database_url
from adapters.views import open_view
from domain.application import FlightLedger
from domain.financial_event import FinancialEvent
from domain.ids import financial_event_id
from domain.ports import FixedClock
from domain.records import Charge, FlightEndedRecord, Party
from projections.financial_events import LOAD_ROWS_IN_MEMORY
from projections.view import ProjectedView
from workers.bootstrap import open_ledger
from workers.projector import REBUILD_BATCH_SIZE, Projector, iter_notifications

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
CHUNK = 5000


def _flight(n: int) -> FlightEndedRecord:
    from domain.records import Aircraft, Hobbs

    return FlightEndedRecord(
        flight_id=f"F-{n}",
        ended_at=AT,
        student=Party(id=f"S-{n % 50}", name="Student"),
        instructor=Party(id="I-3", name="Sam Lee"),
        aircraft=Aircraft(tail="N172SP", type="C172"),
        hobbs=Hobbs(start=Decimal("1234.5"), end=Decimal("1235.7")),
        charges=(Charge(code="aircraft_rental", quantity=Decimal("1.2"), rate=Decimal("165.00")),),
        currency="USD",
    )


def build_log(ledger: FlightLedger, events: int) -> int:
    """Append `events` events: half creations, then PushStarted and Synced for the first ones."""
    creations = events // 2
    pushes = events // 4
    synced = events - creations - pushes
    for start in range(0, creations, CHUNK):
        records = [_flight(n) for n in range(start, min(start + CHUNK, creations))]
        ledger.record_batch("bench", records, at=AT)
    later: list[object] = []
    for n in range(pushes):
        later.append(
            FinancialEvent.PushStarted(  # type: ignore[call-arg]
                originator_id=financial_event_id("bench", "flight-ended", f"F-{n}"),
                originator_version=2,
                timestamp=AT,
                attempt=1,
                request_id=f"r-{n}",
                doc_number=f"FL-{n}",
                batched=True,
                actor="bench",
            )
        )
    for n in range(synced):
        later.append(
            FinancialEvent.Synced(  # type: ignore[call-arg]
                originator_id=financial_event_id("bench", "flight-ended", f"F-{n}"),
                originator_version=3,
                timestamp=AT,
                qbo_id=str(n),
                doc_number=f"FL-{n}",
                actor="bench",
            )
        )
    for start in range(0, len(later), CHUNK):
        chunk = later[start : start + CHUNK]
        ledger.recorder.insert_events([ledger.mapper.to_stored_event(e) for e in chunk])  # type: ignore[arg-type]
    return creations + pushes + synced


def plain_decode(ledger: FlightLedger) -> int:
    """Read every notification in pages and decode it; no writes (the baseline)."""
    count = 0
    for page in iter_notifications(ledger, page=CHUNK):
        for notification in page:
            ledger.mapper.to_domain_event(notification)
        count += len(page)
    return count


def batch_by_batch(ledger: FlightLedger, view: ProjectedView) -> int:
    """The view emptied, then projected through apply_batch alone (what a projector does to a
    view that is not empty: counters and row indexes kept up row by row), in rebuild-sized
    batches: the path `view rebuild` took before the from-empty load."""
    view.drop()
    projector = Projector(ledger, view)
    applied = 0
    while batch := projector.run_batch(REBUILD_BATCH_SIZE):
        applied += batch
    return applied


def measure(url: str, events: int, repeats: int = 1) -> dict[str, Any]:
    """Build the log at url, then time plain decode, rebuild (the from-empty load) and the
    batch-by-batch path on it, `repeats` times each (alternating). The first projection also
    writes the audit chain (the batch-by-batch run goes first); later ones find it."""
    ledger = open_ledger(url, clock=FixedClock(AT))
    view = open_view(url)
    try:
        build_log(ledger, events)
        figures: dict[str, list[float]] = {
            "decode_eps": [],
            "rebuild_eps": [],
            "ratios": [],
            "batch_eps": [],
            "batch_ratios": [],
        }
        decoded = 0
        synced = events - events // 2 - events // 4
        for _ in range(repeats):
            started = time.perf_counter()
            batched = batch_by_batch(ledger, view)
            batch_s = time.perf_counter() - started
            assert view.counts("bench")["synced"] == synced
            started = time.perf_counter()
            decoded = plain_decode(ledger)
            decode_s = time.perf_counter() - started
            started = time.perf_counter()
            rebuilt = Projector(ledger, view).rebuild()
            rebuild_s = time.perf_counter() - started
            assert rebuilt == decoded == batched, (rebuilt, decoded, batched)
            assert view.counts("bench")["synced"] == synced
            figures["decode_eps"].append(decoded / decode_s)
            figures["rebuild_eps"].append(rebuilt / rebuild_s)
            figures["ratios"].append(rebuild_s / decode_s)
            figures["batch_eps"].append(batched / batch_s)
            figures["batch_ratios"].append(batch_s / decode_s)
        return {"events": decoded, **figures}
    finally:
        view.close()
        ledger.close()


def _spread(values: list[float], fmt: str) -> str:
    """Median, with the range when there are several runs."""
    middle = format(statistics.median(values), fmt)
    if len(values) == 1:
        return middle
    return f"{middle} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def _postgres(events: int, repeats: int) -> dict[str, Any] | str:
    import psycopg
    from psycopg import sql

    base = os.environ.get("FLIGHTLEDGER_TEST_DB", DEFAULT_PG)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    url = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    conninfo = parse_database_url(url).psycopg_conninfo()
    try:
        with psycopg.connect(conninfo, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"skipped: PostgreSQL unreachable ({str(exc).splitlines()[0]})"
    try:
        return measure(url, events, repeats)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def run(quick: bool = False) -> str:
    """Markdown: rebuild vs plain decode of the same log, on SQLite and PostgreSQL."""
    events = 2_000 if quick else 100_000
    repeats = 1 if quick else 3
    load = os.getloadavg()[0]
    results: dict[str, dict[str, Any] | str] = {}
    with tempfile.TemporaryDirectory() as directory:
        results["SQLite (file, WAL)"] = measure(f"sqlite:///{directory}/bench.db", events, repeats)
    results["PostgreSQL"] = _postgres(events, repeats)
    lines = [
        "## View rebuild (financial-event view)",
        "",
        f"A log of {events:,} events (half FlightEnded, then PushStarted and Synced), rebuilt "
        "by `view rebuild` (the projector's from-empty load, `ProjectedView.load`: one "
        f"transaction; the log read in pages of {REBUILD_BATCH_SIZE:,}, stored JSON decoded "
        "straight into the few fields a row needs, rows folded as plain lists and held in "
        f"memory up to {LOAD_ROWS_IN_MEMORY:,}, written once with only the primary key kept "
        "up (SQLite executemany, PostgreSQL COPY into the table), then the row, reason and "
        "usage counters counted by GROUP BY, the seven row indexes built, PostgreSQL's rows "
        "ANALYZEd) against a plain read-and-decode of the same notifications "
        "(`select_notifications` + `mapper.to_domain_event`, no writes), in the same run. "
        "'Batch by batch' is the path a projector takes on a view that is not empty, and "
        "`view rebuild` took before the load: one transaction per batch, the counters and "
        "the row indexes kept up row by row (SQLite upserts with executemany, PostgreSQL "
        "COPYs into a temporary table and upserts). "
        f"{repeats} alternating runs of each on the same log: median (min–max); the first "
        "batch-by-batch run also writes the audit chain, later ones find it.",
        "",
        "| backend | events | decode events/s | rebuild events/s | ratio rebuild/decode | "
        "batch by batch events/s | ratio batch by batch/decode |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, figures in results.items():
        if isinstance(figures, str):
            lines.append(f"| {backend} | — | — | — | {figures} | — | — |")
            continue
        lines.append(
            f"| {backend} | {figures['events']:,} | {_spread(figures['decode_eps'], ',.0f')} | "
            f"{_spread(figures['rebuild_eps'], ',.0f')} | "
            f"**{_spread(figures['ratios'], '.2f')}x** | "
            f"{_spread(figures['batch_eps'], ',.0f')} | "
            f"{_spread(figures['batch_ratios'], '.2f')}x |"
        )
    end_load = os.getloadavg()[0]
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {platform.system()}; PostgreSQL on 127.0.0.1; "
        f"{'quick smoke run' if quick else 'full run'}; load average {load:.2f} at the start, "
        f"{end_load:.2f} at the end (other work shares the machine, hence the ranges).",
        "",
        "History: the stock eventsourcing runner commits one transaction per event (about "
        "1,300 events/s). The 2026-11-21 run (2.37x SQLite, 2.42x PostgreSQL) was batch by "
        "batch before the events tab's five row indexes (17e3e98, about 2.4->2.9x in a "
        "same-load bisect) and the usage counters (a2d825a, 2.9->3.5-4.0x), which every row "
        "write then paid for; by 2026-12-02 00:26 it was 3.65x / 4.27x (after dropping two "
        "redundant indexes, c99ad2c). The from-empty load pays for neither row by row: each "
        "row is written once (not once per event that changes it), indexes and counters are "
        "built once from the rows. A view that is not empty is still projected batch by "
        "batch (its counters must follow each change).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=os.environ.get("BENCH_QUICK") == "1"))
