"""SqliteHeartbeatStore: heartbeats in the SQLite file; sqlite3 errors become HeartbeatError."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from adapters.heartbeat_store import HeartbeatError, HeartbeatStore


class SqliteHeartbeatStore(HeartbeatStore):
    """One autocommit connection per call."""

    placeholder = "?"

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            uri = self.db.path.startswith("file:")
            conn = sqlite3.connect(self.db.path, timeout=30, uri=uri, isolation_level=None)
            try:
                yield conn
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as exc:
            raise HeartbeatError(f"the heartbeat table failed: {exc}") from None
