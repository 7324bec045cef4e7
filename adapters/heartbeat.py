"""Worker heartbeats in the log's own database: "worker seen recently" for the checklist.

Table ``flightledger_worker_heartbeat(worker_id PRIMARY KEY, seen_at, detail)`` in the same
SQLite file or PostgreSQL schema; one row per worker, overwritten on every beat.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from adapters.persistence import DatabaseUrl, setup_lock

TABLE = "flightledger_worker_heartbeat"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(worker_id TEXT PRIMARY KEY, seen_at TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '')"
)


class HeartbeatStore:
    """Write and read worker heartbeats (ISO UTC timestamps)."""

    def __init__(self, db: DatabaseUrl) -> None:
        self.db = db
        self._ready = False

    def _connect(self) -> Any:
        if self.db.is_postgres:
            import psycopg
            from psycopg import sql

            conn = psycopg.connect(self.db.psycopg_conninfo(), autocommit=True, connect_timeout=10)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.db.schema)))
            return conn
        uri = self.db.path.startswith("file:")
        return sqlite3.connect(self.db.path, timeout=30, uri=uri, isolation_level=None)

    def _param(self, text: str) -> str:
        return text.replace("?", "%s") if self.db.is_postgres else text

    def _run(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conn = self._connect()
        try:
            if not self._ready:
                with setup_lock(self.db):
                    conn.execute(_CREATE)
                self._ready = True
            cursor = conn.execute(self._param(statement), params)
            rows = cursor.fetchall() if cursor.description else []
            return list(rows)
        finally:
            conn.close()

    def beat(self, worker_id: str, at: datetime, detail: str = "") -> None:
        """Record that a worker is alive now."""
        self._run(
            f"INSERT INTO {TABLE} (worker_id, seen_at, detail) VALUES (?, ?, ?) "
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

    def close(self) -> None:
        """Nothing is kept open between calls."""


def open_heartbeat(db: DatabaseUrl) -> HeartbeatStore:
    """The heartbeat store of a database."""
    return HeartbeatStore(db)
