"""Shared fixtures: one fresh database per test (SQLite file or PostgreSQL schema)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.application import FlightLedger
from domain.ports import FixedClock
from workers.bootstrap import open_ledger

DEFAULT_TEST_DB = "postgresql://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_base_url() -> str:
    return os.environ.get("FLIGHTLEDGER_TEST_DB", DEFAULT_TEST_DB)


def _postgres_unavailable_reason() -> str | None:
    import psycopg

    from adapters.persistence import parse_database_url

    try:
        db = parse_database_url(_postgres_base_url())
        with psycopg.connect(db.psycopg_conninfo(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {_postgres_base_url()} is unreachable: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    """Whether PostgreSQL answers; under CI=true its absence is a failure, not a skip."""
    reason = _postgres_unavailable_reason()
    if reason is None:
        return True
    if IN_CI:
        pytest.fail(f"CI=true requires PostgreSQL: {reason}")
    pytest.skip(f"{reason} (set FLIGHTLEDGER_TEST_DB, or run under CI=true to require it)")


def require_postgres() -> None:
    """Skip without PostgreSQL; under CI=true its absence is a failure (for unittest classes)."""
    reason = _postgres_unavailable_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {reason}")
        pytest.skip(reason)


def new_schema_url() -> str:
    """The test database's URL with a fresh schema name (created on first use)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    base = _postgres_base_url()
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}schema={schema}"


def drop_schema(url: str) -> None:
    """DROP SCHEMA ... CASCADE for the schema the URL names."""
    import psycopg
    from psycopg import sql

    from adapters.persistence import parse_database_url

    db = parse_database_url(url)
    with psycopg.connect(db.psycopg_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(db.schema)))


@pytest.fixture
def pg_url(postgres_available: bool) -> Iterator[str]:
    """A PostgreSQL URL with a schema of its own, dropped after the test."""
    url = new_schema_url()
    yield url
    drop_schema(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file URL in the test's own directory."""
    return f"sqlite:///{tmp_path / 'flightledger.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flightledger.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def clock() -> FixedClock:
    """A clock standing at 2026-11-20 08:00 UTC."""
    return FixedClock(datetime(2026, 11, 20, 8, 0, tzinfo=UTC))


@pytest.fixture
def ledger(db_url: str, clock: FixedClock) -> Iterator[FlightLedger]:
    """The application on a fresh database, on both backends."""
    app = open_ledger(db_url, clock=clock)
    yield app
    app.close()
