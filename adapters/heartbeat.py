"""Worker heartbeats: `open_heartbeat` picks the backend of the log's database.

The port is `adapters.heartbeat_store.HeartbeatStore`; the backends are
`adapters.heartbeat_sqlite.SqliteHeartbeatStore` and
`adapters.heartbeat_postgres.PostgresHeartbeatStore`.
"""

from __future__ import annotations

from adapters.heartbeat_store import HeartbeatError, HeartbeatStore
from adapters.persistence import DatabaseUrl

__all__ = ["HeartbeatError", "HeartbeatStore", "open_heartbeat"]


def open_heartbeat(db: DatabaseUrl) -> HeartbeatStore:
    """The heartbeat store of a database."""
    if db.is_postgres:
        from adapters.heartbeat_postgres import PostgresHeartbeatStore

        return PostgresHeartbeatStore(db)
    from adapters.heartbeat_sqlite import SqliteHeartbeatStore

    return SqliteHeartbeatStore(db)
