"""SqliteHeartbeatStore: heartbeats in the SQLite file; sqlite3 errors become HeartbeatError."""

from __future__ import annotations

import sqlite3
from typing import Any

from adapters.heartbeat_store import CREATE, TABLE, HeartbeatError, HeartbeatStore
from adapters.persistence import setup_lock


class SqliteHeartbeatStore(HeartbeatStore):
    """One autocommit connection per call."""

    def _upsert_statement(self) -> str:
        return (
            f"INSERT INTO {TABLE} (worker_id, seen_at, detail) VALUES (?, ?, ?) "
            "ON CONFLICT (worker_id) DO UPDATE SET seen_at = excluded.seen_at, "
            "detail = excluded.detail"
        )

    def _run(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            uri = self.db.path.startswith("file:")
            conn = sqlite3.connect(self.db.path, timeout=30, uri=uri, isolation_level=None)
            try:
                if not self._ready:
                    with setup_lock(self.db):
                        conn.execute(CREATE)
                    self._ready = True
                cursor = conn.execute(statement, params)
                return list(cursor.fetchall() if cursor.description else [])
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as exc:
            raise HeartbeatError(f"the heartbeat table failed: {exc}") from None
