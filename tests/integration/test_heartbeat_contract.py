"""The heartbeat store's contract on every backend (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.heartbeat import HeartbeatError, HeartbeatStore, open_heartbeat
from adapters.heartbeat_postgres import PostgresHeartbeatStore
from adapters.heartbeat_sqlite import SqliteHeartbeatStore
from adapters.persistence import ensure_schema, parse_database_url

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class HeartbeatContract:
    """What every heartbeat backend does; subclasses say how to make one."""

    url: str
    backend: type[HeartbeatStore]

    def create_store(self) -> HeartbeatStore:
        """A store on this backend's test database."""
        db = parse_database_url(self.url)
        ensure_schema(db)
        return open_heartbeat(db)

    def unusable_store(self) -> HeartbeatStore:
        """A store whose database cannot be used."""
        raise NotImplementedError

    def test_no_worker_has_run(self) -> None:
        """An empty table: no last_seen, no details; the backend is the database's."""
        store = self.create_store()
        assert isinstance(store, self.backend)
        assert store.last_seen() is None and store.details() == {}

    def test_beats_overwrite_one_row_per_worker(self) -> None:
        """Each worker keeps its latest beat and detail; last_seen is the newest of all."""
        store = self.create_store()
        store.beat("w1", NOW, "healthy")
        store.beat("w2", NOW + timedelta(seconds=5), "healthy")
        store.beat("w1", NOW + timedelta(seconds=9), "unhealthy: boom")
        assert self.create_store().last_seen() == NOW + timedelta(seconds=9)
        assert store.details() == {
            "w1": (NOW + timedelta(seconds=9), "unhealthy: boom"),
            "w2": (NOW + timedelta(seconds=5), "healthy"),
        }

    def test_driver_errors_become_heartbeat_errors(self) -> None:
        """An unusable database is a HeartbeatError, never a sqlite3 / psycopg exception."""
        with pytest.raises(HeartbeatError, match="heartbeat table"):
            self.unusable_store().last_seen()


class TestSqliteHeartbeatStore(HeartbeatContract):
    """The contract on a SQLite file."""

    backend = SqliteHeartbeatStore

    @pytest.fixture(autouse=True)
    def _database(self, sqlite_url: str) -> None:
        self.url = sqlite_url

    def unusable_store(self) -> HeartbeatStore:
        """A SQLite "database" file that is not a database."""
        path = Path(parse_database_url(self.url).path).with_name("garbage.db")
        path.write_bytes(b"this is not a SQLite database, just bytes " * 100)
        return SqliteHeartbeatStore(parse_database_url(f"sqlite:///{path}"))


class TestPostgresHeartbeatStore(HeartbeatContract):
    """The contract on a PostgreSQL schema of its own."""

    backend = PostgresHeartbeatStore

    @pytest.fixture(autouse=True)
    def _database(self, pg_url: str) -> None:
        self.url = pg_url

    def unusable_store(self) -> HeartbeatStore:
        """A PostgreSQL server on a port nobody listens on."""
        return PostgresHeartbeatStore(parse_database_url("postgresql://postgres@127.0.0.1:1/test"))
