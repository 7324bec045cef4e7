"""Worker heartbeats in the log's own database: "worker seen recently" for the checklist.

Table ``flightledger_worker_heartbeat(worker_id PRIMARY KEY, seen_at, detail)`` in the same
SQLite file or PostgreSQL schema; one row per worker, overwritten on every beat. This module
holds the port and the SQL every backend runs; `adapters/heartbeat_sqlite.py` and
`adapters/heartbeat_postgres.py` are the backends (each opens its driver's connection and turns
the driver's errors into `HeartbeatError`), `adapters.heartbeat.open_heartbeat` picks one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, ClassVar

from adapters.persistence import DatabaseUrl, setup_lock

TABLE = "flightledger_worker_heartbeat"
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(worker_id TEXT PRIMARY KEY, seen_at TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '')"
)


class HeartbeatError(RuntimeError):
    """The heartbeat table cannot be written or read; the message says why."""


class HeartbeatStore(ABC):
    """Write and read worker heartbeats (ISO UTC timestamps), one autocommit connection a call."""

    placeholder: ClassVar[str]  # the driver's parameter marker: "?" or "%s"

    def __init__(self, db: DatabaseUrl) -> None:
        self.db = db
        self._ready = False

    @abstractmethod
    def _connection(self) -> AbstractContextManager[Any]:
        """An autocommit connection on the log's database, closed on exit; the driver's errors,
        in opening it and in whatever runs on it, leave as HeartbeatError."""

    def _run(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement (the table is created on first use); the rows it returns."""
        with self._connection() as conn:
            if not self._ready:
                with setup_lock(self.db):
                    conn.execute(CREATE)
                self._ready = True
            cursor = conn.execute(statement, params)
            return list(cursor.fetchall() if cursor.description else [])

    def beat(self, worker_id: str, at: datetime, detail: str = "") -> None:
        """Record that a worker is alive now."""
        marks = ", ".join([self.placeholder] * 3)
        self._run(
            f"INSERT INTO {TABLE} (worker_id, seen_at, detail) VALUES ({marks}) "
            "ON CONFLICT (worker_id) DO UPDATE SET seen_at = excluded.seen_at, "
            "detail = excluded.detail",
            (worker_id, at.isoformat(), detail),
        )

    def last_seen(self) -> datetime | None:
        """The most recent heartbeat of any worker, or None when no worker has run."""
        rows = self._run(f"SELECT max(seen_at) FROM {TABLE}")
        value = rows[0][0] if rows else None
        return datetime.fromisoformat(value) if value else None

    def details(self) -> dict[str, tuple[datetime, str]]:
        """Every worker's last heartbeat and its detail ('healthy' / 'unhealthy: <error>')."""
        rows = self._run(f"SELECT worker_id, seen_at, detail FROM {TABLE}")
        return {str(w): (datetime.fromisoformat(str(at)), str(d)) for w, at, d in rows}

    def close(self) -> None:  # noqa: B027 - a no-op by default: no backend keeps a connection
        """Nothing is kept open between calls."""
