"""One URL configures persistence: parsing, the library environment, and the bulk adapters."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.persistence import Mapper

from adapters.eventstore_postgres import PostgresBulkApplicationRecorder
from adapters.eventstore_sqlite import SQLiteBulkApplicationRecorder
from adapters.persistence import DatabaseUrlError, parse_database_url
from workers.bootstrap import open_ledger


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("", "empty"),
        ("sqlite://x.db", "sqlite:///"),
        ("sqlite:///", "no file path"),
        ("sqlite:////no/such/dir/x.db", "does not exist"),
        ("mysql://h/db", "unsupported scheme"),
        ("postgresql://h:5432/", "names no database"),
        ("postgresql://h/db?schema=Bad-Name", "schema must be"),
        ("postgresql://h/db?sslmode=x", "unknown URL parameter"),
        ("postgresql://h:port/db", "port is not a number"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, part: str) -> None:
    """Each malformed URL is refused with a message naming what is wrong."""
    with pytest.raises(DatabaseUrlError, match=part):
        parse_database_url(url)


def test_postgres_url_parts_and_redaction() -> None:
    """User, password, host, port, database and schema are read; the password never shows."""
    db = parse_database_url("postgresql://ana:s%40cret@db.local:6543/ledger?schema=school_1")
    assert (db.user, db.password, db.host, db.port, db.dbname, db.schema) == (
        "ana",
        "s@cret",
        "db.local",
        6543,
        "ledger",
        "school_1",
    )
    assert "s%40cret" not in db.redacted()
    env = db.eventsourcing_env()
    assert env["PERSISTENCE_MODULE"].endswith(":PostgresBulkFactory")
    assert env["POSTGRES_SCHEMA"] == "school_1"
    assert "POSTGRES_ENABLE_DB_FUNCTIONS" not in env


def test_sqlite_file_uses_the_bulk_recorder_and_mapper(tmp_path: Path) -> None:
    """A SQLite URL opens the log with the bulk recorder and the library's mapper."""
    ledger = open_ledger(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert isinstance(ledger.recorder, SQLiteBulkApplicationRecorder)
        assert type(ledger.mapper) is Mapper
    finally:
        ledger.close()
    assert (tmp_path / "x.db").exists()


def test_sqlite_memory_url_works() -> None:
    """sqlite:///:memory: gives a working shared-memory log."""
    ledger = open_ledger("sqlite:///:memory:")
    try:
        assert ledger.recorder.max_notification_id() is None
    finally:
        ledger.close()


def test_postgres_schema_is_created_and_used(pg_url: str) -> None:
    """A PostgreSQL URL with ?schema= creates the schema and uses the bulk recorder in it."""
    ledger = open_ledger(pg_url)
    try:
        assert isinstance(ledger.recorder, PostgresBulkApplicationRecorder)
        assert ledger.recorder.datastore.schema == parse_database_url(pg_url).schema
        assert ledger.recorder.max_notification_id() is None
    finally:
        ledger.close()
