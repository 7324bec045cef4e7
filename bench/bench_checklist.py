"""Checklist, `mappings check` and the dashboard's home page on a big log (usage counters).

A log of N flights (bulk import, every flight still unsent: the worst case) is projected with
`view rebuild`; then, in process, the checklist, `mappings check`'s problems and the dashboard's
home page (FastAPI TestClient, GET /) are timed from the view's usage counters. The baseline,
in the same run, is what they did before the counters: load every unsent event from the log
(`events_in` + `FlightLedger.mapping_problems`), timed on a smaller log because at N it takes
minutes; the table shows its per-event cost and what it comes to at N.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    flight_record,
    machine,
    postgres_schema,
    postgres_unavailable,
    run_cli,
    write_flights,
)

SCHOOL = "bench"
REPEATS = 3
# (GET /, GET / right after a change) in ms at 1,000,000 events before the view's row counters
# (status counts and reason groups read from the rows, student names from the log): this
# bench's _measure run with the code of commit 930f363 on this machine, 2026-12-01 23:11 UTC,
# load average 10 (the run of record before that, on another machine at load 10-14, had GET /
# at 1006 ms on SQLite and 1955 ms on PostgreSQL)
HOME_BEFORE_MS = {"SQLite": (124, 167), "PostgreSQL": (396, 641)}


def _best(func: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def _prepare(db_url: str, flights: Path) -> tuple[float, float]:
    """Import and project; (import seconds, rebuild seconds)."""
    base = ["--db", db_url, "--school", SCHOOL, "--json"]
    imported = run_cli([*base, "record", "flight-ended", str(flights)])
    rebuilt = run_cli([*base, "view", "rebuild"])
    return imported, rebuilt


def _measure(db_url: str) -> dict[str, float]:
    """Seconds (best of 3) of checklist, mappings check and GET / on the projected log, and of
    GET / right after a change (one flight recorded, applied by the page's view refresh)."""
    from fastapi.testclient import TestClient

    from adapters.persistence import parse_database_url
    from adapters.views import open_view
    from adapters.web.app import create_app
    from adapters.web.auth import local_operator
    from domain.records import parse_flight_ended
    from workers.bootstrap import open_ledger
    from workers.projector import Projector
    from workers.selection import checklist, checklist_rows, mapping_problems

    db = parse_database_url(db_url)
    ledger = open_ledger(db_url)
    view = open_view(db_url)
    try:
        ledger.map_charge(SCHOOL, "aircraft_rental", "1", operator="bench")
        for n in range(0, 500, 2):  # half the students mapped: 250 problems to report
            ledger.map_student(SCHOOL, f"S-{n}", str(n), operator="bench")
        app = create_app(
            ledger=ledger,
            view=view,
            refresh_view=Projector(ledger, view).catch_up,
            session_key=b"b" * 32,
            local_user=local_operator(SCHOOL),
            checklist=lambda school: checklist_rows(checklist(ledger, view, db, school)),
        )
        client = TestClient(app)
        problems = mapping_problems(ledger, view, db, SCHOOL)
        assert len(problems) == 252, len(problems)  # 250 students + 2 charge codes
        home = client.get("/")
        assert home.status_code == 200, home.text[:300]
        added = iter(range(10_000_000, 20_000_000))

        def after_change() -> float:
            ledger.record(SCHOOL, parse_flight_ended(flight_record(next(added))))
            start = time.perf_counter()
            assert client.get("/").status_code == 200
            return time.perf_counter() - start

        return {
            "checklist": _best(lambda: checklist(ledger, view, db, SCHOOL)),
            "check": _best(lambda: mapping_problems(ledger, view, db, SCHOOL)),
            "home": _best(lambda: client.get("/")),
            "changed": min(after_change() for _ in range(REPEATS)),
        }
    finally:
        view.close()
        ledger.close()


def _baseline(db_url: str) -> float:
    """Seconds of the old path (every unsent event loaded from the log) on this log."""
    from adapters.views import open_view
    from workers.bootstrap import open_ledger
    from workers.selection import UNSENT, events_in

    ledger = open_ledger(db_url)
    view = open_view(db_url)
    try:
        start = time.perf_counter()
        ledger.mapping_problems(SCHOOL, events_in(ledger, view, SCHOOL, UNSENT))
        return time.perf_counter() - start
    finally:
        view.close()
        ledger.close()


def _backend(name: str, url: str, small_url: str, flights: Path, small: Path, count: int,
             small_count: int) -> str:  # fmt: skip
    imported, rebuilt = _prepare(url, flights)
    timings = _measure(url)
    _prepare(small_url, small)
    old = _baseline(small_url)
    per_event = old / small_count
    worst = max(timings["checklist"], timings["check"], timings["home"])
    home_before = changed_before = "-"
    if count == 1_000_000:
        home_ms, changed_ms = HOME_BEFORE_MS[name]
        home_before, changed_before = f"{home_ms} ms", f"{changed_ms} ms"
    return (
        f"| {name} | {count:,} | {timings['checklist'] * 1000:.0f} ms "
        f"| {timings['check'] * 1000:.0f} ms | {timings['home'] * 1000:.0f} ms | {home_before} "
        f"| {timings['changed'] * 1000:.0f} ms | {changed_before} "
        f"| {old:.2f} s at {small_count:,} ({per_event * 1e6:.0f} µs/event, "
        f"~{per_event * count:.0f} s at {count:,}) | **{per_event * count / worst:,.0f}x** "
        f"| {imported:.0f} s / {rebuilt:.0f} s |"
    )


def run(quick: bool = False) -> str:
    """Measure on SQLite and PostgreSQL; return the Markdown section."""
    count = int(os.environ.get("BENCH_CHECKLIST_EVENTS") or (20_000 if quick else 1_000_000))
    small_count = min(count, 2_000 if quick else 20_000)
    rows: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-checklist-") as tmp:
        folder = Path(tmp)
        flights = write_flights(folder / "flights.jsonl", count)
        small = write_flights(folder / "small.jsonl", small_count)
        rows.append(
            _backend(
                "SQLite",
                f"sqlite:///{folder / 'big.db'}",
                f"sqlite:///{folder / 'small.db'}",
                flights,
                small,
                count,
                small_count,
            )
        )
        reason = postgres_unavailable()
        if reason is None:
            with postgres_schema("bench_big") as big, postgres_schema("bench_small") as little:
                rows.append(_backend("PostgreSQL", big, little, flights, small, count, small_count))
        else:
            notes.append(f"PostgreSQL not measured: {reason}")
    load = os.getloadavg()[0]
    lines = [
        "## Checklist, `mappings check` and the dashboard home page on a big log",
        "",
        f"{count:,} flights (2-3 charge codes, 500 students), all still unsent (the worst "
        "case: every one is a candidate), imported with `record flight-ended` and projected "
        "with `view rebuild`; 1 charge code and half the students mapped, so 252 problems are "
        "reported. Timed in process, best of 3: the checklist (`workers.selection.checklist`), "
        "`mappings check`'s problems (`workers.selection.mapping_problems`) and the dashboard's "
        "home page (GET / through FastAPI's TestClient, which builds the checklist). They read "
        "the view's usage counters (`flightledger_view_usage`), and the home page its row "
        "counters (`flightledger_view_counts` per status and kind, `flightledger_view_reasons` "
        "per reason and missing key) and students table, all kept by the projector in the same "
        "transaction as the rows. 'After a change': one flight recorded before each request, "
        "which the page's view refresh applies first. 'Before': the same steps with the code "
        "before the row counters (status counts and reason groups read from the rows, reused "
        "only while nothing changed; student names from the log), on this machine at "
        "1,000,000 (`HOME_BEFORE_MS`, measured once: a 1M import per backend takes minutes). "
        "Baseline, same run: the old path (every unsent event loaded from the log, then "
        "`FlightLedger.mapping_problems`) on a smaller log, and what its per-event cost comes "
        "to at the full size; speed-up = that / the slowest of ours.",
        "",
        "| backend | flights | checklist | mappings check | home page | before | home page "
        "after a change | before | old path | speed-up | import / rebuild |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
        *rows,
        "",
        f"Goal: under 1 s at 1,000,000 events on both backends. {machine()}; PostgreSQL on "
        f"127.0.0.1; load average {load:.2f} at the end (other work shares the 2 cores).",
        *notes,
    ]
    return "\n".join(lines) + "\n"
