"""The cache of QuickBooks' lists in the log's own database (SQLite file or PostgreSQL schema).

Tables ``flightledger_qbo_lists(school, realm, entity, qbo_id, name, active, type, email)`` and
``flightledger_qbo_lists_fetched(school, realm, fetched_at)``; a fetch replaces the school's
rows of that realm in one transaction, so readers see the old lists or the new, never a mix.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from adapters.persistence import DatabaseUrl, setup_lock
from domain.qbo_lists import QboLists, QboObject

TABLE = "flightledger_qbo_lists"
FETCHED = "flightledger_qbo_lists_fetched"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (school TEXT NOT NULL, realm TEXT NOT NULL, "
    "entity TEXT NOT NULL, qbo_id TEXT NOT NULL, name TEXT NOT NULL, active BOOLEAN NOT NULL, "
    "type TEXT, email TEXT, PRIMARY KEY (school, realm, entity, qbo_id))",
    f"CREATE TABLE IF NOT EXISTS {FETCHED} (school TEXT NOT NULL, realm TEXT NOT NULL, "
    "fetched_at TEXT NOT NULL, PRIMARY KEY (school, realm))",
)


class QboListStore:
    """Store and read the cached QuickBooks lists of each school and realm."""

    def __init__(self, db: DatabaseUrl) -> None:
        self.db = db
        self._ready = False

    def _connect(self) -> Any:
        if self.db.is_postgres:
            import psycopg
            from psycopg import sql

            conn = psycopg.connect(self.db.psycopg_conninfo(), autocommit=True, connect_timeout=10)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.db.schema)))
            return conn
        uri = self.db.path.startswith("file:")
        return sqlite3.connect(self.db.path, timeout=30, uri=uri, isolation_level=None)

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.db.is_postgres else text

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Any]:
        conn = self._connect()
        try:
            if write and not self._ready:
                with setup_lock(self.db):
                    for statement in _CREATE:
                        conn.execute(statement)
                self._ready = True
            if self.db.is_postgres:
                with conn.transaction():
                    yield conn
            else:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
        finally:
            conn.close()

    def put(self, lists: QboLists) -> None:
        """Replace the school's cached lists of this realm with these (one transaction)."""
        rows = [
            (lists.school, lists.realm, o.entity, o.id, o.name, o.active, o.type, o.email)
            for objects in lists.objects.values()
            for o in objects.values()
        ]
        with self._transaction(write=True) as conn:
            key = (lists.school, lists.realm)
            conn.execute(self._sql(f"DELETE FROM {TABLE} WHERE school=? AND realm=?"), key)
            cursor = conn.cursor()
            cursor.executemany(
                self._sql(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"), rows
            )
            conn.execute(
                self._sql(
                    f"INSERT INTO {FETCHED} VALUES (?, ?, ?) ON CONFLICT (school, realm) "
                    "DO UPDATE SET fetched_at = excluded.fetched_at"
                ),
                (*key, lists.fetched_at.isoformat()),
            )

    def add(self, school: str, realm: str, obj: QboObject) -> bool:
        """Put one object into the cached lists of a realm (replacing the same id) — only when
        the lists were fetched before (a lone row must not look like a whole list)."""
        try:
            with self._transaction(write=True) as conn:
                fetched = conn.execute(
                    self._sql(f"SELECT 1 FROM {FETCHED} WHERE school=? AND realm=?"),
                    (school, realm),
                ).fetchall()
                if not fetched:
                    return False
                key = (school, realm, obj.entity, obj.id)
                conn.execute(
                    self._sql(
                        f"DELETE FROM {TABLE} WHERE school=? AND realm=? AND entity=? AND qbo_id=?"
                    ),
                    key,
                )
                conn.execute(
                    self._sql(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                    (*key, obj.name, obj.active, obj.type, obj.email),
                )
        except (sqlite3.OperationalError, _pg_undefined_table()):
            return False  # no table yet: nothing was ever fetched
        return True

    def get(self, school: str, realm: str) -> QboLists | None:
        """The cached lists of a school's realm, or None when never fetched (or no table)."""
        try:
            with self._transaction(write=False) as conn:
                fetched = conn.execute(
                    self._sql(f"SELECT fetched_at FROM {FETCHED} WHERE school=? AND realm=?"),
                    (school, realm),
                ).fetchall()
                if not fetched:
                    return None
                rows = conn.execute(
                    self._sql(
                        f"SELECT entity, qbo_id, name, active, type, email FROM {TABLE} "
                        "WHERE school=? AND realm=?"
                    ),
                    (school, realm),
                ).fetchall()
        except (sqlite3.OperationalError, _pg_undefined_table()):
            return None  # no table yet: nothing was ever fetched
        return lists_from_rows(school, realm, datetime.fromisoformat(fetched[0][0]), rows)


def lists_from_rows(
    school: str, realm: str, fetched_at: datetime, rows: Sequence[Sequence[Any]]
) -> QboLists:
    """QboLists from (entity, id, name, active, type, email) rows."""
    objects: dict[str, dict[str, QboObject]] = {}
    for entity, qbo_id, name, active, kind, email in rows:
        objects.setdefault(entity, {})[qbo_id] = QboObject(
            entity=entity, id=qbo_id, name=name, active=bool(active), type=kind, email=email
        )
    return QboLists(school=school, realm=realm, fetched_at=fetched_at, objects=objects)


def lists_from_objects(
    school: str, realm: str, fetched_at: datetime, found: Mapping[str, Sequence[QboObject]]
) -> QboLists:
    """QboLists from the objects a gateway read, per entity."""
    objects = {entity: {o.id: o for o in found_objects} for entity, found_objects in found.items()}
    return QboLists(school=school, realm=realm, fetched_at=fetched_at, objects=objects)


def _pg_undefined_table() -> type[Exception]:
    try:
        from psycopg.errors import UndefinedTable
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return sqlite3.OperationalError
    return UndefinedTable
