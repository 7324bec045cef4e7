"""SqliteTokenVault: rows in the log's SQLite file; sqlite3 errors become VaultUnavailable."""

from __future__ import annotations

import sqlite3
from typing import Any

from adapters.vault import TokenVault, VaultUnavailable


class SqliteTokenVault(TokenVault):
    """The vault table in a SQLite database (each statement one BEGIN IMMEDIATE transaction on
    a connection of its own: opening a SQLite file costs microseconds, and no connection is
    shared between threads)."""

    driver_errors = (sqlite3.Error, OSError)

    def _execute(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            conn = sqlite3.connect(
                self.db.path, uri=self.db.path.startswith("file:"), timeout=30, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise VaultUnavailable(f"the vault database cannot be opened: {exc}") from None
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(statement, params).fetchall()
            conn.execute("COMMIT")
            return rows
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise VaultUnavailable(f"the vault database failed: {exc}") from None
        finally:
            conn.close()
