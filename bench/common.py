"""Shared bench helpers: timing, machine description, PostgreSQL schemas and flight records."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEST_DB = "postgresql://postgres@127.0.0.1:5432/test"
T = TypeVar("T")


def timed(func: Callable[[], T]) -> tuple[T, float]:
    """Call func once; return its result and the wall-clock seconds it took."""
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def best_of(repeats: int, func: Callable[[], float]) -> float:
    """The smallest of several timings (func returns seconds)."""
    return min(func() for _ in range(repeats))


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming the machine: cores, CPU, Python, OS."""
    return (
        f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def postgres_base_url() -> str:
    """The PostgreSQL URL benches use (FLIGHTLEDGER_TEST_DB, as the tests do)."""
    return os.environ.get("FLIGHTLEDGER_TEST_DB", DEFAULT_TEST_DB)


def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    import psycopg

    from adapters.persistence import parse_database_url

    try:
        db = parse_database_url(postgres_base_url())
        with psycopg.connect(db.psycopg_conninfo(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {postgres_base_url()} is unreachable: {exc}"
    return None


@contextmanager
def postgres_schema(prefix: str = "bench") -> Iterator[str]:
    """A PostgreSQL URL with a fresh schema of its own, dropped afterwards."""
    import psycopg
    from psycopg import sql

    from adapters.persistence import parse_database_url

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    base = postgres_base_url()
    url = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    try:
        yield url
    finally:
        db = parse_database_url(url)
        with psycopg.connect(db.psycopg_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


_CHARGES = (
    ("aircraft_rental", "165.00"),
    ("instructor_dual", "60.00"),
    ("fuel_surcharge", "12.50"),
)


def flight_record(n: int) -> dict[str, Any]:
    """The n-th synthetic flight-ended record (deterministic, valid)."""
    start = _tenths(1000 + n * 2)
    hours = 1 + n % 3
    tenths = f"{hours}.{n % 10}"
    end = _tenths(1000 + n * 2 + hours * 10 + n % 10)
    student = f"S-{n % 500}"
    charges = [
        {"code": code, "quantity": tenths, "rate": rate} for code, rate in _CHARGES[: 2 + n % 2]
    ]
    ended = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=17 * n)
    return {
        "flight_id": f"F-{n:07d}",
        "ended_at": ended.isoformat().replace("+00:00", "Z"),
        "student": {"id": student, "name": f"Student {student}"},
        "instructor": {"id": f"I-{n % 20}", "name": f"Instructor {n % 20}"},
        "aircraft": {"tail": f"N{100 + n % 40}SP", "type": "C172"},
        "hobbs": {"start": start, "end": end},
        "charges": charges,
        "currency": "USD",
    }


def _tenths(tenths: int) -> str:
    """An integer count of tenths as a decimal string with one place."""
    return f"{tenths // 10}.{tenths % 10}"


def write_flights(path: Path, count: int, *, start: int = 0) -> Path:
    """Write count flight records as JSON lines; return the path."""
    with path.open("w", encoding="utf-8") as handle:
        for n in range(start, start + count):
            handle.write(json.dumps(flight_record(n), separators=(",", ":")) + "\n")
    return path


def flightledger_command() -> list[str]:
    """The installed CLI next to this interpreter (the real console script)."""
    script = Path(sys.executable).with_name("flightledger")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "workers.cli"]


def run_cli(args: list[str], *, env: dict[str, str] | None = None) -> float:
    """Run the flightledger CLI as a subprocess; seconds from process start to exit."""
    full_env = {**os.environ, **(env or {})}
    start = time.perf_counter()
    completed = subprocess.run(
        [*flightledger_command(), *args],
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        msg = f"flightledger {' '.join(args)} exited {completed.returncode}: {completed.stderr}"
        raise RuntimeError(msg)
    return elapsed
