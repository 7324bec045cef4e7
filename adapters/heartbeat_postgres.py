"""PostgresHeartbeatStore: heartbeats in the log's schema; psycopg errors become HeartbeatError."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from adapters.heartbeat_store import CREATE, TABLE, HeartbeatError, HeartbeatStore
from adapters.persistence import setup_lock


class PostgresHeartbeatStore(HeartbeatStore):
    """One autocommit connection per call, on the log's schema."""

    def _upsert_statement(self) -> str:
        return (
            f"INSERT INTO {TABLE} (worker_id, seen_at, detail) VALUES (%s, %s, %s) "
            "ON CONFLICT (worker_id) DO UPDATE SET seen_at = excluded.seen_at, "
            "detail = excluded.detail"
        )

    def _run(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            conn = psycopg.connect(self.db.psycopg_conninfo(), autocommit=True, connect_timeout=10)
            try:
                conn.execute(
                    sql.SQL("SET search_path TO {}").format(sql.Identifier(self.db.schema))
                )
                if not self._ready:
                    with setup_lock(self.db):
                        conn.execute(CREATE)
                    self._ready = True
                cursor = conn.execute(statement, params)
                return list(cursor.fetchall() if cursor.description else [])
            finally:
                conn.close()
        except (psycopg.Error, OSError) as exc:
            raise HeartbeatError(f"the heartbeat table failed: {exc}") from None
