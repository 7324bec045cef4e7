"""The dashboard's home page and events pages with a large view (SQLite), against a small one.

The log holds 200 real flights (recorded, projected, half blocked on a mapping); the view table
is then filled with synthetic rows up to the target size (9 in 10 synced, 1 in 10 Action
Required on two reasons), as the projector would leave them after a long life (its row counters
and students table moved to match). What is timed is
the page as a browser gets it (FastAPI TestClient, whole request: counts, Action Required
groups, attention banner, card, one page of rows with student names), also right after a change
(a flight recorded, so the page's refresh applies it to the view first). Ratio = time at the
large size / time at 10,000 rows in the same run. `BENCH_DASHBOARD_ROWS` sets the large size.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import machine, postgres_schema, postgres_unavailable, timed

AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
SCHOOL = "bench"
REAL_FLIGHTS = 200
REPEATS = 7
BASE_ROWS = 10_000
FULL_ROWS = 1_000_000
QUICK_ROWS = 3_000
# Median ms per page at 1,000,000 rows with the code before the view's row counters (commit
# 930f363: status counts and reason groups read from the rows, status counts reused only while
# the view had applied nothing new, student names loaded from the log): this bench's steps on
# this machine, once, 2026-12-01 23:50 UTC, load average 9 (filled in from that run)
BEFORE_MS: dict[str, dict[str, float]] = {
    "SQLite": {
        "home page (/)": 745.9,
        "home page, first after a change": 1055.1,
        "events filtered by status, first after a change": 943.7,
        "events page deep in the log (?before=…)": 1364.4,
        "events filtered by status (synced)": 1093.5,
        "events of one student": 1036.8,
        "search by flight id": 874.7,
    },
    "PostgreSQL": {
        "home page (/)": 766.5,
        "home page, first after a change": 1042.3,
        "events filtered by status, first after a change": 927.5,
        "events page deep in the log (?before=…)": 609.9,
        "events filtered by status (synced)": 457.5,
        "events of one student": 328.5,
        "search by flight id": 367.1,
    },
}


def _synthetic(n: int) -> tuple[str, str | None, str]:
    """(status, reason code, missing) of the n-th synthetic row: one in ten waits for a person
    (half of those on an unmapped charge code, half on a validation error), the rest synced."""
    if n % 10:
        return "synced", None, "[]"
    if n % 20:
        return "action_required", "validation", "[]"
    return "action_required", "missing_mapping", '["charge:fuel_surcharge"]'


def _fill(url: str, total: int) -> int:
    """Synthetic rows (positions after the real ones) up to `total` rows; returns a position
    in the middle (for a deep page)."""
    if url.startswith("postgresql"):
        return _fill_postgres(url, total)
    return _fill_sqlite(Path(url.removeprefix("sqlite:///")), total)


def _fill_postgres(url: str, total: int) -> int:
    """_fill on PostgreSQL: COPY into the rows table, then the counters and students."""
    import psycopg
    from psycopg import sql

    from adapters.persistence import parse_database_url

    db = parse_database_url(url)

    def table(name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(db.schema), sql.Identifier(name))

    rows = table("flightledger_view_rows")
    with psycopg.connect(db.psycopg_conninfo()) as conn:
        found = conn.execute(
            sql.SQL("SELECT COUNT(*), COALESCE(MAX(position), 0) FROM {}").format(rows)
        ).fetchone()
        assert found is not None
        have, top = int(found[0]), int(found[1])
        added = total - have
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(rows, sql.SQL(_COLUMNS))) as copy,
        ):
            for n in range(added):
                at = (AT + timedelta(seconds=n)).isoformat()
                status, code, missing = _synthetic(n)
                synced = status == "synced"
                keys = json.loads(missing)
                copy.write_row(
                    (
                        uuid.uuid4().hex, SCHOOL, "flight-ended", f"H-{n}", f"S-{n % 500}",
                        "270.00", status, code, "" if synced else "fix it", keys or "{}", 1,
                        str(n + 1000) if synced else None, f"FL-H-{n}", at, None, at,
                        top + 1 + n,
                    )
                )  # fmt: skip
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (db.schema,),
            )
        }
        statuses, reasons = _filled_counts(added)
        if "flightledger_view_counts" in tables and added > 0:
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {} AS t VALUES (%s, %s, 'flight-ended', %s) ON CONFLICT "
                        "(school, status, kind) DO UPDATE SET n = t.n + EXCLUDED.n"
                    ).format(table("flightledger_view_counts")),
                    [(SCHOOL, status, count) for status, count in statuses.items()],
                )
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {} AS t VALUES (%s, %s, %s, %s) ON CONFLICT "
                        "(school, reason_code, part) DO UPDATE SET n = t.n + EXCLUDED.n"
                    ).format(table("flightledger_view_reasons")),
                    [(SCHOOL, code, part, count) for (code, part), count in reasons.items()],
                )
        if "flightledger_view_students" in tables:
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {} VALUES (%s, %s, %s) ON CONFLICT DO NOTHING").format(
                        table("flightledger_view_students")
                    ),
                    [(SCHOOL, f"S-{n}", f"Student S-{n}") for n in range(500)],
                )
        conn.commit()
        conn.execute(sql.SQL("ANALYZE {}").format(rows))
        conn.commit()
    return top + added // 2


def _filled_counts(added: int) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Rows per status and per (reason, missing key or "") among `added` synthetic rows."""
    statuses: dict[str, int] = {}
    reasons: dict[tuple[str, str], int] = {}
    for n in range(added):
        status, code, missing = _synthetic(n)
        statuses[status] = statuses.get(status, 0) + 1
        if code is not None:
            for part in ("", *json.loads(missing)):
                reasons[(code, part)] = reasons.get((code, part), 0) + 1
    return statuses, reasons


_COLUMNS = (
    "id, school, kind, reference, student_id, amount, status, reason_code, reason, missing, "
    "attempts, qbo_id, doc_number, updated_at, applies_to, created_at, position"
)


def _fill_sqlite(db_file: Path, total: int) -> int:
    """_fill on SQLite."""
    from adapters.sqlite_view import ROWS

    insert = f"INSERT INTO {ROWS} ({_COLUMNS}) VALUES ({','.join('?' * 17)})"
    with sqlite3.connect(db_file) as db:
        have, top = db.execute(
            f"SELECT COUNT(*), COALESCE(MAX(position), 0) FROM {ROWS}"
        ).fetchone()
        rows = []
        for n in range(total - have):
            at = (AT + timedelta(seconds=n)).isoformat()
            status, code, missing = _synthetic(n)
            synced = status == "synced"
            rows.append(
                (
                    uuid.uuid4().hex, SCHOOL, "flight-ended", f"H-{n}", f"S-{n % 500}", "270.00",
                    status, code, "" if synced else "fix it", missing, 1,
                    str(n + 1000) if synced else None, f"FL-H-{n}", at, None, at, top + 1 + n,
                )
            )  # fmt: skip
            if len(rows) == 50_000:
                db.executemany(insert, rows)
                rows.clear()
        if rows:
            db.executemany(insert, rows)
        _count_filled(db, total - have)
        db.execute("ANALYZE")
        db.commit()
        return int(top + (total - have) // 2)


def _count_filled(db: sqlite3.Connection, added: int) -> None:
    """Move the row counters and students table as the projector would for the filled rows
    (views without them, before they existed, count at read time)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "flightledger_view_counts" in tables and added > 0:
        statuses, reasons = _filled_counts(added)
        db.executemany(
            "INSERT INTO flightledger_view_counts VALUES (?, ?, 'flight-ended', ?) "
            "ON CONFLICT (school, status, kind) DO UPDATE SET n = n + excluded.n",
            [(SCHOOL, status, count) for status, count in statuses.items()],
        )
        db.executemany(
            "INSERT INTO flightledger_view_reasons VALUES (?, ?, ?, ?) "
            "ON CONFLICT (school, reason_code, part) DO UPDATE SET n = n + excluded.n",
            [(SCHOOL, code, part, count) for (code, part), count in reasons.items()],
        )
    if "flightledger_view_students" in tables:
        db.executemany(
            "INSERT OR IGNORE INTO flightledger_view_students VALUES (?, ?, ?)",
            [(SCHOOL, f"S-{n}", f"Student S-{n}") for n in range(500)],
        )


def _client(url: str) -> tuple[Any, Any, Callable[[], None]]:
    from fastapi.testclient import TestClient

    from adapters.views import open_view
    from adapters.web.app import create_app
    from adapters.web.auth import local_operator
    from domain.ports import FixedClock
    from domain.records import parse_flight_ended
    from tests.factories import flight
    from workers.bootstrap import open_ledger
    from workers.projector import Projector

    ledger = open_ledger(url, clock=FixedClock(AT))
    view = open_view(url)
    if not view.counts(SCHOOL):
        for n in range(REAL_FLIGHTS):
            ledger.record(SCHOOL, parse_flight_ended(flight(f"F-{n}", f"S-{n % 20}")))
        ledger.map_charge(SCHOOL, "instructor_dual", "2", operator="bench")
    projector = Projector(ledger, view)
    projector.catch_up()
    app = create_app(
        ledger=ledger,
        view=view,
        refresh_view=projector.catch_up,
        session_key=os.urandom(32),
        local_user=local_operator(SCHOOL),
    )
    client = TestClient(app)

    def close() -> None:
        client.close()
        view.close()
        ledger.close()

    return client, ledger, close


def _median_ms(client: Any, path: str, change: Callable[[], None] | None = None) -> float:
    """Median ms of GET path; with `change`, each request follows a change to the log."""
    client.get(path)  # warm
    times = []
    for _ in range(REPEATS):
        if change is not None:
            change()
        response, seconds = timed(lambda: client.get(path))
        assert response.status_code == 200, (path, response.status_code)
        times.append(seconds * 1000)
    return statistics.median(times)


def _recorder(ledger: Any) -> Callable[[], None]:
    """Records one more flight each call (the next page applies it to the view)."""
    from domain.records import parse_flight_ended
    from tests.factories import flight

    def change() -> None:
        ledger.record(SCHOOL, parse_flight_ended(flight(f"N-{uuid.uuid4().hex[:12]}")))

    return change


def _measure(url: str, total: int) -> dict[str, float]:
    middle = _fill(url, total)
    client, ledger, close = _client(url)
    change = _recorder(ledger)
    try:
        return {
            "home page (/)": _median_ms(client, "/"),
            "home page, first after a change": _median_ms(client, "/", change),
            "events filtered by status, first after a change": _median_ms(
                client, f"/?status=synced&before={middle}", change
            ),
            "events page deep in the log (?before=…)": _median_ms(client, f"/?before={middle}"),
            "events filtered by status (synced)": _median_ms(
                client, f"/?status=synced&before={middle}"
            ),
            "events of one student": _median_ms(client, "/?student=S-7"),
            "search by flight id": _median_ms(client, f"/?q=H-{total // 3}"),
        }
    finally:
        close()


def _backend(url: str, base: int, large: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms per page at the base and the large size on one backend's database."""
    from workers.bootstrap import open_ledger

    open_ledger(url).close()
    _client(url)[2]()  # real log + view tables
    return _measure(url, base), _measure(url, large)


def run(*, quick: bool = False) -> str:
    """Markdown section: median ms per page at the base and the large size, and the ratio."""
    large = int(os.environ.get("BENCH_DASHBOARD_ROWS") or (QUICK_ROWS if quick else FULL_ROWS))
    base = min(BASE_ROWS, large // 3)
    measured: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="flightledger-bench-dashboard-") as tmp:
        measured["SQLite"] = _backend(f"sqlite:///{Path(tmp) / 'dashboard.db'}", base, large)
    reason = postgres_unavailable()
    if reason is None:
        with postgres_schema("bench_dashboard") as url:
            measured["PostgreSQL"] = _backend(url, base, large)
    else:
        notes.append(f"PostgreSQL not measured: {reason}")
    lines = [
        "## Dashboard pages at scale",
        "",
        f"A view with {large:,} rows vs {base:,} rows, on SQLite and on PostgreSQL "
        f"({REAL_FLIGHTS} real flights in the log, the rest synthetic rows written straight "
        "into the view table: 9 in 10 synced, 1 in 10 Action Required on two reasons); median "
        f"of {REPEATS} whole requests through FastAPI's TestClient.",
        "",
        "Status counts, Action Required groups, the banner and student names are read from the "
        "view's counters and students table (kept by the projector in the rows' transaction), "
        "so the first page after a change costs what any other does plus applying the change; "
        "'first after a change' rows record one flight before each timed request. The 'before' "
        "column ran these steps once with the code before the row counters (commit 930f363: "
        "status counts and reason groups read from the rows on each page, the counts reused "
        "only while nothing changed, student names loaded from the log) on this machine.",
        "",
        f"| backend | page | {base:,} rows (ms) | {large:,} rows (ms) | ratio | {large:,} rows "
        "before the row counters (ms) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for backend, (small, big) in measured.items():
        for name, ms in big.items():
            before = BEFORE_MS.get(backend, {}).get(name) if large == FULL_ROWS else None
            was = "-" if before is None else f"{before:.1f}"
            lines.append(
                f"| {backend} | {name} | {small[name]:.1f} | {ms:.1f} "
                f"| {ms / small[name]:.2f} | {was} |"
            )
    lines += [
        "",
        f"Goal: every page under 300 ms at {FULL_ROWS:,} rows, the first one after a change "
        f"included. {machine()}; PostgreSQL on 127.0.0.1; load average "
        f"{os.getloadavg()[0]:.2f} at the end (other work shares the 2 cores).",
        *notes,
    ]
    return "\n".join(lines) + "\n"
