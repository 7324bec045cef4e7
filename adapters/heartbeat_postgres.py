"""PostgresHeartbeatStore: heartbeats in the log's schema; psycopg errors become HeartbeatError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from adapters.heartbeat_store import HeartbeatError, HeartbeatStore


class PostgresHeartbeatStore(HeartbeatStore):
    """One autocommit connection per call, on the log's schema."""

    placeholder = "%s"

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        try:
            conn = psycopg.connect(self.db.psycopg_conninfo(), autocommit=True, connect_timeout=10)
            try:
                conn.execute(
                    sql.SQL("SET search_path TO {}").format(sql.Identifier(self.db.schema))
                )
                yield conn
            finally:
                conn.close()
        except (psycopg.Error, OSError) as exc:
            raise HeartbeatError(f"the heartbeat table failed: {exc}") from None
