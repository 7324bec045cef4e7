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


def measure(url: str, events: int, repeats: int = 1) -> dict[str, Any]:
    """Build the log at url, then time plain decode and rebuild on it, `repeats` times each
    (alternating). The first rebuild also writes the audit chain; later ones find it."""
    ledger = open_ledger(url, clock=FixedClock(AT))
    view = open_view(url)
    try:
        build_log(ledger, events)
        decode_eps: list[float] = []
        rebuild_eps: list[float] = []
        ratios: list[float] = []
        decoded = 0
        for _ in range(repeats):
            started = time.perf_counter()
            decoded = plain_decode(ledger)
            decode_s = time.perf_counter() - started
            started = time.perf_counter()
            rebuilt = Projector(ledger, view).rebuild()
            rebuild_s = time.perf_counter() - started
            assert rebuilt == decoded, (rebuilt, decoded)
            assert view.counts("bench")["synced"] == events - events // 2 - events // 4
            decode_eps.append(decoded / decode_s)
            rebuild_eps.append(rebuilt / rebuild_s)
            ratios.append(rebuild_s / decode_s)
        return {
            "events": decoded,
            "decode_eps": decode_eps,
            "rebuild_eps": rebuild_eps,
            "ratios": ratios,
        }
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
        "by the batched projector (`view rebuild`: drop, then batches of "
        f"{REBUILD_BATCH_SIZE:,} events, one transaction and one tracking position each; "
        "stored JSON decoded straight into the few fields a row needs, with the library's "
        "mapper as the fallback; rows folded as plain lists; SQLite upserts with executemany, "
        "PostgreSQL COPYs into a temporary table and upserts in one statement; audit chain "
        "extended in the same transaction) against a plain read-and-decode of the same "
        "notifications (`select_notifications` + `mapper.to_domain_event`, no writes), in "
        f"the same run. {repeats} alternating runs of each on the same log: median "
        "(min–max); the first rebuild also writes the audit chain, later ones find it.",
        "",
        "| backend | events | decode events/s | rebuild events/s | ratio rebuild/decode |",
        "|---|---:|---:|---:|---:|",
    ]
    for backend, figures in results.items():
        if isinstance(figures, str):
            lines.append(f"| {backend} | — | — | — | {figures} |")
            continue
        lines.append(
            f"| {backend} | {figures['events']:,} | {_spread(figures['decode_eps'], ',.0f')} | "
            f"{_spread(figures['rebuild_eps'], ',.0f')} | "
            f"{_spread(figures['ratios'], '.2f')}x |"
        )
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {platform.system()}; PostgreSQL on 127.0.0.1; "
        f"{'quick smoke run' if quick else 'full run'}; load average {load:.2f} at the start "
        "(other work shares the machine, hence the ranges). Before this fast path (same "
        "machine, 5,000-event batches, mapper decode, dataclass fold, executemany on both "
        "backends) rebuild ran at about 12,500-20,000 events/s (ratio 3.6-3.7x); the stock "
        "eventsourcing runner commits one transaction per event (about 1,300 events/s). "
        "The 2026-11-21 run (2.37x SQLite, 2.42x PostgreSQL) predates the events tab's five "
        "row indexes (17e3e98, about 2.4->2.9x in a same-load bisect) and the usage counters "
        "(a2d825a, 2.9->3.5-4.0x), which every row write now pays for; the row counters, the "
        "students table and the row-fields change cost little. Dropping the redundant "
        "(school, status) and unsettled-rows indexes (c99ad2c): SQLite 4.23-4.46x -> "
        "3.89-3.90x, PostgreSQL within noise, same load, 100,000 events.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=os.environ.get("BENCH_QUICK") == "1"))
