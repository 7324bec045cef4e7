"""SqliteTokenVault: the vault's rows in the log's SQLite file; sqlite3 errors become VaultError."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from adapters.persistence import setup_lock
from adapters.vault import TABLE, TokenVault, VaultError


class SqliteTokenVault(TokenVault):
    """The vault table in a SQLite database (each call one BEGIN IMMEDIATE transaction)."""

    driver_errors = (sqlite3.Error, OSError)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(
                self.db.path, uri=self.db.path.startswith("file:"), timeout=30, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise VaultError(f"the vault database cannot be opened: {exc}") from None
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise VaultError(f"the vault database failed: {exc}") from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _create_table(self) -> None:
        try:
            with setup_lock(self.db), self._transaction() as conn:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} (school TEXT NOT NULL, "
                    "name TEXT NOT NULL, blob BLOB NOT NULL, expires_at TEXT, "
                    "updated_at TEXT NOT NULL, PRIMARY KEY (school, name))"
                )
        except self.driver_errors as exc:
            raise VaultError(f"the vault database cannot be set up: {exc}") from None

    def _upsert(self, school: str, name: str, blob: bytes, expires_at: str | None, at: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO {TABLE} (school, name, blob, expires_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (school, name) DO UPDATE SET "
                "blob = EXCLUDED.blob, expires_at = EXCLUDED.expires_at, "
                "updated_at = EXCLUDED.updated_at",
                (school, name, blob, expires_at, at),
            )

    def _select(self, school: str, name: str) -> bytes | None:
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT blob FROM {TABLE} WHERE school = ? AND name = ?", (school, name)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def _remove(self, school: str, name: str) -> bytes | None:
        with self._transaction() as conn:
            row = conn.execute(
                f"DELETE FROM {TABLE} WHERE school = ? AND name = ? RETURNING blob",
                (school, name),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def all_rows(self) -> list[tuple[str, str, bytes]]:
        """Every (school, name, blob) row, for inspection in tests."""
        with self._transaction() as conn:
            rows = conn.execute(f"SELECT school, name, blob FROM {TABLE}").fetchall()
        return [(r[0], r[1], bytes(r[2])) for r in rows]
