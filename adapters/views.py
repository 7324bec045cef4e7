"""Open the financial-event view that lives next to the log at a database URL."""

from __future__ import annotations

from eventsourcing.utils import Environment

from adapters.persistence import DatabaseUrl, ensure_schema, parse_database_url, setup_lock
from adapters.postgres_view import PostgresFinancialEventView
from adapters.sqlite_view import SQLiteFinancialEventView

VIEW_ENV_NAME = "flightledger_view"  # PostgreSQL tracking table: flightledger_view_tracking


def open_view(db: DatabaseUrl | str) -> SQLiteFinancialEventView | PostgresFinancialEventView:
    """The view in the log's own database (same SQLite file, same PostgreSQL schema)."""
    parsed = parse_database_url(db) if isinstance(db, str) else db
    env = Environment(VIEW_ENV_NAME, parsed.eventsourcing_env())
    if parsed.is_postgres:
        from eventsourcing.postgres import PostgresFactory

        ensure_schema(parsed)
        env["POSTGRES_POOL_SIZE"] = "1"
        env["POSTGRES_MAX_OVERFLOW"] = "4"
        env["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"] = "60"
        with setup_lock(parsed):
            pg_factory = PostgresFactory(env)
            return pg_factory.tracking_recorder(PostgresFinancialEventView)
    from eventsourcing.sqlite import SQLiteFactory

    sqlite_factory = SQLiteFactory(env)
    view = sqlite_factory.tracking_recorder(SQLiteFinancialEventView)
    assert isinstance(view, SQLiteFinancialEventView)
    return view
