"""PostgresTokenVault: rows in the log's schema; psycopg errors become VaultUnavailable."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import psycopg

from adapters.vault import TokenVault, VaultUnavailable


class PostgresTokenVault(TokenVault):
    """The vault table in a PostgreSQL schema, on one connection of the vault's own.

    A worker reads a school's tokens several times a pass; a new connection per read cost about
    17 % of its CPU. The connection is opened on first use and kept; the vault's threads take
    turns on it (a statement takes well under a millisecond). A connection the server closed
    meanwhile (a restart, an idle timeout) is replaced: a statement that fails on a kept
    connection before its commit is run once more on a new one (nothing of it was done).
    """

    driver_errors = (psycopg.Error, OSError)
    param = "%s"
    blob_type = "BYTEA"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conn: psycopg.Connection[Any] | None = None
        self._conn_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.db.psycopg_conninfo(), connect_timeout=10)
        except psycopg.Error as exc:
            raise VaultUnavailable(f"the vault database cannot be reached: {exc}") from None
        try:
            conn.execute(f'SET search_path TO "{self.db.schema}"')
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise VaultUnavailable(f"the vault database failed: {exc}") from None
        return conn

    def _execute(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn_lock:
            for attempt in (1, 2):
                kept = self._usable()
                if not kept:
                    self._drop()
                    self._conn = self._connect()
                conn = self._conn
                assert conn is not None
                try:
                    cursor = conn.execute(statement, params)
                    rows = cursor.fetchall() if cursor.description is not None else []
                except psycopg.Error as exc:
                    self._rollback()
                    died = isinstance(exc, psycopg.OperationalError) and not self._usable()
                    if kept and died and attempt == 1:
                        continue  # the kept connection had died; nothing was committed
                    raise VaultUnavailable(f"the vault database failed: {exc}") from None
                try:
                    conn.commit()
                except psycopg.Error as exc:  # it may have been committed: never run again
                    self._rollback()
                    raise VaultUnavailable(f"the vault database failed: {exc}") from None
                return rows
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _usable(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed and not conn.broken

    def _rollback(self) -> None:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return
        try:
            conn.rollback()
        except psycopg.Error:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):  # a dead connection may fail to close
                conn.close()

    def close(self) -> None:
        """Close the vault's connection (it is opened again if the vault is used again)."""
        with self._conn_lock:
            self._drop()
