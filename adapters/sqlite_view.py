"""The financial-event view in SQLite, in the same file as the log."""

from __future__ import annotations

import builtins
import itertools
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, overload
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    OperationalError,
    PersistenceError,
)
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder

from projections import audit
from projections.financial_events import (
    COL_ID,
    COL_MISSING,
    GROUP_ROWS,
    RAW_COLUMNS,
    UNSENT_STATUSES,
    USAGE_EXAMPLES,
    Change,
    LoadFold,
    RawRow,
    UsageRow,
    batch_student_names,
    count_deltas,
    counts_from,
    fold_raw,
    raw_ids_to_load,
    reason_groups_from,
    row_from_raw,
    usage_writes,
)
from projections.view import (
    UNSETTLED_STATUSES,
    VIEW_TRACKING_NAME,
    VIEW_VERSION,
    EventQuery,
    EventRow,
    KeyUsage,
    ReasonGroup,
    TrackingConflict,
)

ROWS = "flightledger_view_rows"
TRACKING = "flightledger_view_tracking"
CHAIN = "flightledger_audit_chain"
USES = "flightledger_view_uses"  # the mapping keys each financial event uses
USAGE = "flightledger_view_usage"  # per school and key: unsent and total counts, examples
COUNTS = "flightledger_view_counts"  # rows per school, status and kind
REASONS = "flightledger_view_reasons"  # action-required rows per school, reason, missing key
STUDENTS = "flightledger_view_students"  # each student's display name, per school
META = "flightledger_view_meta"  # the layout's version (projections.view.VIEW_VERSION)
_COUNTER_TABLES = (ROWS, USES, USAGE, COUNTS, REASONS, STUDENTS)  # emptied by drop()
_COLUMNS = ", ".join(RAW_COLUMNS)  # the projection's row layout, in its order
_UPDATED = [c for c in RAW_COLUMNS if c not in ("id", "position")]
_INSERT = f"INSERT INTO {ROWS} ({_COLUMNS}) VALUES ({', '.join('?' * len(RAW_COLUMNS))})"
_UPSERT = (
    f"INSERT INTO {ROWS} ({_COLUMNS}) VALUES ({', '.join('?' * len(RAW_COLUMNS))}) "
    f"ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c}=excluded.{c}' for c in _UPDATED)}"
)
# Each column's SQL type (the names and their order are RAW_COLUMNS'): the rows table's DDL.
_ROW_TYPES = {
    "id": "TEXT PRIMARY KEY",
    "school": "TEXT NOT NULL",
    "kind": "TEXT NOT NULL",
    "reference": "TEXT NOT NULL",
    "student_id": "TEXT NOT NULL",
    "amount": "TEXT NOT NULL",
    "status": "TEXT NOT NULL",
    "reason_code": "TEXT",
    "reason": "TEXT NOT NULL",
    "missing": "TEXT NOT NULL",
    "attempts": "INTEGER NOT NULL",
    "qbo_id": "TEXT",
    "doc_number": "TEXT",
    "updated_at": "TEXT NOT NULL",
    "applies_to": "TEXT",
    "created_at": "TEXT",
    "position": "INTEGER NOT NULL",
    "qbo_amount": "TEXT",
    "corrections": "TEXT NOT NULL DEFAULT ''",
}
_ROWS_DDL = ", ".join(f"{c} {_ROW_TYPES[c]}" for c in RAW_COLUMNS)  # KeyError: a new column
_ADDED_COLUMNS = tuple((c, _ROW_TYPES[c]) for c in ("qbo_amount", "corrections"))
# The rows table's secondary indexes, by name: a from-empty load (`load`) drops them and
# creates them again after the rows are in, instead of keeping them up row by row.
_ROW_INDEXES = {
    f"{ROWS}_school_position": f"CREATE INDEX IF NOT EXISTS {ROWS}_school_position ON {ROWS} "
    "(school, position)",
    # the events tab's filters, each walked newest first by keyset on the position
    f"{ROWS}_status_page": f"CREATE INDEX IF NOT EXISTS {ROWS}_status_page ON {ROWS} "
    "(school, status, position)",
    f"{ROWS}_reason_page": f"CREATE INDEX IF NOT EXISTS {ROWS}_reason_page ON {ROWS} "
    "(school, reason_code, position)",
    f"{ROWS}_student_page": f"CREATE INDEX IF NOT EXISTS {ROWS}_student_page ON {ROWS} "
    "(school, student_id, position)",
    f"{ROWS}_reference": f"CREATE INDEX IF NOT EXISTS {ROWS}_reference ON {ROWS} "
    "(school, reference)",
    f"{ROWS}_doc_number": f"CREATE INDEX IF NOT EXISTS {ROWS}_doc_number ON {ROWS} "
    "(school, doc_number)",
    # a reason group's example: its oldest action-required row, one seek
    f"{ROWS}_action_required": f"CREATE INDEX IF NOT EXISTS {ROWS}_action_required ON {ROWS} "
    "(school, reason_code, position) WHERE status = 'action_required'",
}
_SQLITE_MAX_VARS = 500
_UNSETTLED = ", ".join(f"'{s}'" for s in UNSETTLED_STATUSES)  # literals: schools_with_work
_UNSENT = ", ".join(f"'{s}'" for s in sorted(UNSENT_STATUSES))
_ACTION = "'action_required'"
# A from-empty load counts the loaded rows once, by GROUP BY (what apply_batch keeps up batch
# by batch through count_deltas / usage_writes; tests/integration/test_view_load.py compares).
_LOAD_COUNTS = (
    f"INSERT INTO {COUNTS} SELECT school, status, kind, count(*) FROM {ROWS} "
    "GROUP BY school, status, kind",
    # a reason group's own count (part GROUP_ROWS, ''), then each missing key once per row
    f"INSERT INTO {REASONS} SELECT school, coalesce(reason_code, ''), '', count(*) FROM {ROWS} "
    f"WHERE status = {_ACTION} GROUP BY school, coalesce(reason_code, '')",
    f"INSERT INTO {REASONS} SELECT school, code, part, count(*) FROM (SELECT DISTINCT r.id, "
    "r.school, coalesce(r.reason_code, '') AS code, m.value AS part "
    f"FROM {ROWS} r, json_each(r.missing) m WHERE r.status = {_ACTION} AND m.value <> '') "
    "GROUP BY school, code, part",
    f"INSERT INTO {USAGE} SELECT r.school, k.value, sum(r.status IN ({_UNSENT})), count(*), "
    f"'[]' FROM {ROWS} r JOIN {USES} u ON u.id = r.id, json_each(u.uses) k "
    "GROUP BY r.school, k.value",
)
# the examples: each key's oldest unsent references (by log position), USAGE_EXAMPLES of them
_LOAD_EXAMPLES = (
    "SELECT school, key, reference FROM (SELECT r.school, k.value AS key, r.reference, "
    "row_number() OVER (PARTITION BY r.school, k.value ORDER BY r.position) AS n "
    f"FROM {ROWS} r JOIN {USES} u ON u.id = r.id, json_each(u.uses) k "
    f"WHERE r.status IN ({_UNSENT})) WHERE n <= {USAGE_EXAMPLES} ORDER BY school, key, n"
)
POLL_SECONDS = 0.15


def _encode_raw(row: RawRow) -> list[Any]:
    """A raw row (projections.financial_events) as column values: strings are stored as-is."""
    values = builtins.list(row)
    values[COL_ID] = row[COL_ID].hex
    missing = row[COL_MISSING]
    values[COL_MISSING] = json.dumps(builtins.list(missing)) if missing else "[]"
    return values


def _decode(r: Any) -> EventRow:
    raw = builtins.list(r)
    raw[COL_ID] = UUID(raw[COL_ID])
    raw[COL_MISSING] = json.loads(raw[COL_MISSING])
    return row_from_raw(raw)


class PollingListener:
    """SQLite has no notifications: wake every POLL_SECONDS."""

    pid: int | None = None

    def __init__(self, interval: float = POLL_SECONDS) -> None:
        self.interval = interval
        self._closed = threading.Event()

    def wait(self, timeout: float) -> bool:
        """Sleep one poll interval (at most timeout); always worth a look."""
        self._closed.wait(min(timeout, self.interval))
        return True

    def close(self) -> None:
        """Nothing to release."""
        self._closed.set()


class SQLiteFinancialEventView(SQLiteTrackingRecorder):
    """Rows, tracking position and audit chain in tables next to the SQLite log."""

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.insert_tracking_statement = (
            f"INSERT INTO {TRACKING} VALUES (:application_name, :notification_id) "
            "ON CONFLICT (application_name) DO UPDATE "
            "SET notification_id = :notification_id "
            f"WHERE {TRACKING}.notification_id < :notification_id "
            "RETURNING notification_id"
        )
        self.select_max_tracking_id_statement = (
            f"SELECT MAX(notification_id) FROM {TRACKING} WHERE application_name=?"
        )

    # --- schema -------------------------------------------------------------------------------

    def construct_create_table_statements(self) -> builtins.list[str]:
        """The view's tables and indexes."""
        return [
            f"CREATE TABLE IF NOT EXISTS {TRACKING} (application_name TEXT PRIMARY KEY, "
            "notification_id INTEGER NOT NULL) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {ROWS} ({_ROWS_DDL})",
            # (school, status) is status_page's prefix, and schools_with_work reads the counters:
            # both indexes only slowed every row write (rebuild ~15 %); views made with them
            f"DROP INDEX IF EXISTS {ROWS}_school_status",
            f"DROP INDEX IF EXISTS {ROWS}_unsettled",
            *_ROW_INDEXES.values(),
            f"CREATE TABLE IF NOT EXISTS {CHAIN} (position INTEGER PRIMARY KEY, "
            "hash BLOB NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {USES} (id TEXT PRIMARY KEY, uses TEXT NOT NULL) "
            "WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {USAGE} (school TEXT NOT NULL, key TEXT NOT NULL, "
            "unsent INTEGER NOT NULL, total INTEGER NOT NULL, examples TEXT NOT NULL, "
            "PRIMARY KEY (school, key)) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {COUNTS} (school TEXT NOT NULL, status TEXT NOT NULL, "
            "kind TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (school, status, kind)) "
            "WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {REASONS} (school TEXT NOT NULL, "
            "reason_code TEXT NOT NULL, part TEXT NOT NULL, n INTEGER NOT NULL, "
            "PRIMARY KEY (school, reason_code, part)) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {STUDENTS} (school TEXT NOT NULL, "
            "student_id TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (school, student_id)) "
            "WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {META} (name TEXT PRIMARY KEY, value INTEGER NOT NULL) "
            "WITHOUT ROWID",
        ]

    def create_table(self) -> None:
        """Create the tables; a view stored under an older layout (VIEW_VERSION) is emptied,
        to be projected again from the start of the log."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name=?", (ROWS,))
            existed = c.fetchone() is not None
            version = self._stored_version(c) if existed else VIEW_VERSION
        if version > VIEW_VERSION:
            msg = (
                f"the view was built by a newer flightledger (layout {version}, this one reads "
                f"{VIEW_VERSION}): upgrade flightledger"
            )
            raise OperationalError(msg)
        try:
            with self.datastore.transaction(commit=True) as c:
                for statement in self.create_table_statements:
                    c.execute(statement)
                c.execute(f"PRAGMA table_info({ROWS})")
                present = {str(r[1]) for r in c.fetchall()}
                for column, kind in _ADDED_COLUMNS:  # views made before these columns existed
                    if column not in present:
                        c.execute(f"ALTER TABLE {ROWS} ADD COLUMN {column} {kind}")
                if version != VIEW_VERSION:  # rows without today's counters: project again
                    self._empty(c)
                if not existed or version != VIEW_VERSION:
                    # written only when it changes: a write on every open would make each
                    # reader (a CLI `events`, a dashboard page) wait on a running worker's write
                    # lock ("database is locked"); the DDL above is a no-op that takes none
                    c.execute(
                        f"INSERT OR REPLACE INTO {META} VALUES ('version', ?)", (VIEW_VERSION,)
                    )
        except (sqlite3.OperationalError, OperationalError) as exc:
            if not (version == VIEW_VERSION and "readonly" in str(exc).replace("-", "")):
                raise OperationalError(str(exc)) from exc  # a read-only copy: read as it is

    @staticmethod
    def _stored_version(c: Any) -> int:
        """The layout version a stored view was built under (0: before versions were kept)."""
        c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name=?", (META,))
        if c.fetchone() is None:
            return 0
        c.execute(f"SELECT value FROM {META} WHERE name='version'")
        found = c.fetchone()
        return int(found[0]) if found else 0

    @staticmethod
    def _empty(c: Any) -> None:
        """Delete every row and counter and the view's tracking position."""
        for table in _COUNTER_TABLES:
            c.execute(f"DELETE FROM {table}")
        c.execute(f"DELETE FROM {TRACKING} WHERE application_name=?", (VIEW_TRACKING_NAME,))

    # --- tracking (the library's TrackingRecorder contract plus the view's own position) -------

    @overload
    def max_tracking_id(self) -> int: ...

    @overload
    def max_tracking_id(self, application_name: str) -> int | None: ...

    def max_tracking_id(self, application_name: str | None = None) -> int | None:
        """With no name: the view's position (0 when empty); else the library's contract."""
        with self.datastore.transaction(commit=False) as c:
            found = self._max_tracking_id(application_name or VIEW_TRACKING_NAME, c)
        if application_name is None:
            return found or 0
        return found

    # --- writes -------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One IMMEDIATE transaction (the write lock is taken before anything is read)."""
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor().sqlite_cursor
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
            except sqlite3.IntegrityError as exc:
                raise IntegrityError(str(exc)) from exc
            except sqlite3.OperationalError as exc:
                raise OperationalError(str(exc)) from exc
            except sqlite3.Error as exc:
                raise PersistenceError(str(exc)) from exc
            finally:
                cursor.close()

    def _before_commit(self) -> None:
        """Called after a batch is written and before it commits (a seam for crash tests)."""

    def apply_batch(
        self,
        changes: Sequence[tuple[int, Any]],
        notifications: Sequence[Notification],
        *,
        previous: int,
        position: int,
    ) -> int:
        """Fold events into rows, chain notifications and move tracking, in one transaction."""
        with self._write() as c:
            c.execute(
                f"SELECT notification_id FROM {TRACKING} WHERE application_name=?",
                (VIEW_TRACKING_NAME,),
            )
            found = c.fetchone()
            current = found[0] if found else 0
            if current != previous:
                msg = f"view is at {current}, batch expected {previous}"
                raise TrackingConflict(msg)
            c.execute(
                self.insert_tracking_statement,
                {"application_name": VIEW_TRACKING_NAME, "notification_id": position},
            )
            existing = self._load_raw(c, raw_ids_to_load(changes))
            changed = fold_raw(existing, changes)
            c.executemany(_UPSERT, [_encode_raw(r) for r in changed.values()])
            uses, counters = usage_writes(
                existing,
                changed,
                changes,
                lambda ids: self._load_uses(c, ids),
                lambda keys: self._load_usage(c, keys),
            )
            if uses:
                c.executemany(
                    f"INSERT OR REPLACE INTO {USES} VALUES (?, ?)",
                    [(i.hex, json.dumps(u)) for i, u in uses],
                )
            if counters:
                c.executemany(
                    f"INSERT OR REPLACE INTO {USAGE} VALUES (?, ?, ?, ?, ?)",
                    [(s, k, n, t, json.dumps(e)) for s, k, n, t, e in counters],
                )
            self._write_counts(c, existing, changed, changes)
            c.execute(f"SELECT position, hash FROM {CHAIN} ORDER BY position DESC LIMIT 1")
            head = c.fetchone()
            links = audit.extend(
                head[0] if head else 0, head[1] if head else audit.GENESIS, notifications
            )
            if links:
                c.executemany(f"INSERT OR IGNORE INTO {CHAIN} VALUES (?, ?)", links)
            self._before_commit()
        return len(changed)

    def load(
        self,
        batches: Iterable[tuple[Sequence[Change], Sequence[Notification]]],
        *,
        replace: bool,
    ) -> int:
        """A from-empty load, in one transaction: rows folded in memory across batches
        (LoadFold) and written with only the primary key kept up, then the counters counted by
        GROUP BY and the row indexes built once.

        `replace`: empty the view first (a rebuild); otherwise the view must be at position 0
        when the transaction starts, else TrackingConflict and nothing is written. Readers see
        the view as it was until the load commits; the log's writers wait for it (SQLite has
        one write lock per file) and give up after their lock timeout (5 s by default).
        Returns the number of rows written.
        """
        pending = iter(batches)
        first = next(pending, None)
        if first is None and not replace:
            return 0
        written = 0
        with self._write() as c:
            if not replace:
                c.execute(
                    f"SELECT notification_id FROM {TRACKING} WHERE application_name=?",
                    (VIEW_TRACKING_NAME,),
                )
                found = c.fetchone()
                if found and found[0]:
                    msg = f"view is at {found[0]}, a from-empty load expected 0"
                    raise TrackingConflict(msg)
            self._empty(c)
            if first is None:
                return 0
            for name in _ROW_INDEXES:
                c.execute(f"DROP INDEX IF EXISTS {name}")
            c.execute(f"SELECT position, hash FROM {CHAIN} ORDER BY position DESC LIMIT 1")
            head = c.fetchone()
            head_position, head_hash = (head[0], head[1]) if head else (0, audit.GENESIS)
            fold = LoadFold()
            position = 0
            for changes, notifications in itertools.chain([first], pending):
                fold.apply(self._load_raw(c, fold.ids_to_load(changes)), changes)
                if fold.full():
                    written += self._write_loaded(c, fold)
                links = audit.extend(head_position, head_hash, notifications)
                if links:
                    c.executemany(f"INSERT OR IGNORE INTO {CHAIN} VALUES (?, ?)", links)
                    head_position, head_hash = links[-1]
                position = max(position, notifications[-1].id)
            written += self._write_loaded(c, fold)
            for statement in _LOAD_COUNTS:
                c.execute(statement)
            examples: dict[tuple[str, str], builtins.list[str]] = {}
            for school, key, reference in c.execute(_LOAD_EXAMPLES).fetchall():
                examples.setdefault((school, key), []).append(reference)
            c.executemany(
                f"UPDATE {USAGE} SET examples = ? WHERE school = ? AND key = ?",
                [(json.dumps(e), s, k) for (s, k), e in examples.items()],
            )
            c.executemany(
                f"INSERT INTO {STUDENTS} VALUES (?, ?, ?)",
                [(school, student, name) for (school, student), name in fold.names.items()],
            )
            for statement in _ROW_INDEXES.values():
                c.execute(statement)
            c.execute(
                self.insert_tracking_statement,
                {"application_name": VIEW_TRACKING_NAME, "notification_id": position},
            )
            c.fetchall()  # its RETURNING row: a statement still in progress cannot commit
            self._before_commit()
        return written

    @staticmethod
    def _write_loaded(c: sqlite3.Cursor, fold: LoadFold) -> int:
        """Write the rows a load holds: new ones inserted, the others over themselves."""
        (new, new_uses), (again, again_uses) = fold.take()
        c.executemany(_INSERT, [_encode_raw(r) for r in new])
        c.executemany(_UPSERT, [_encode_raw(r) for r in again])
        encode = json.dumps
        c.executemany(
            f"INSERT OR REPLACE INTO {USES} VALUES (?, ?)",
            [(i.hex, encode(u)) for i, u in itertools.chain(new_uses, again_uses)],
        )
        return len(new) + len(again)

    @staticmethod
    def _write_counts(
        c: sqlite3.Cursor,
        existing: dict[UUID, RawRow],
        changed: dict[UUID, RawRow],
        changes: Sequence[tuple[int, Any]],
    ) -> None:
        """Move the row counters and store the students' names (same transaction)."""
        deltas = count_deltas(existing, changed)
        c.executemany(
            f"INSERT INTO {COUNTS} VALUES (?, ?, ?, ?) ON CONFLICT (school, status, kind) "
            f"DO UPDATE SET n = {COUNTS}.n + excluded.n",
            deltas.status_writes(),
        )
        c.executemany(
            f"INSERT INTO {REASONS} VALUES (?, ?, ?, ?) ON CONFLICT (school, reason_code, part) "
            f"DO UPDATE SET n = {REASONS}.n + excluded.n",
            deltas.reason_writes(),
        )
        names = batch_student_names(changed, changes)
        c.executemany(
            f"INSERT INTO {STUDENTS} VALUES (?, ?, ?) ON CONFLICT (school, student_id) "
            "DO UPDATE SET name = excluded.name",
            [(school, student, name) for (school, student), name in names.items()],
        )

    def _load_raw(self, c: sqlite3.Cursor, ids: set[UUID]) -> dict[UUID, RawRow]:
        """Current rows of `ids` in raw form (stored strings kept as they are)."""
        by_hex = {i.hex: i for i in ids}
        keys = builtins.list(by_hex)
        rows: dict[UUID, RawRow] = {}
        loads = json.loads
        for start in range(0, len(keys), _SQLITE_MAX_VARS):
            chunk = keys[start : start + _SQLITE_MAX_VARS]
            c.execute(
                f"SELECT {_COLUMNS} FROM {ROWS} WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in c.fetchall():
                raw = builtins.list(r)
                key = raw[COL_ID] = by_hex[r[COL_ID]]
                missing = r[COL_MISSING]
                raw[COL_MISSING] = tuple(loads(missing)) if missing != "[]" else ()
                rows[key] = raw
        return rows

    def _load_uses(self, c: sqlite3.Cursor, ids: set[UUID]) -> dict[UUID, tuple[str, ...]]:
        """The stored mapping keys of these events."""
        by_hex = {i.hex: i for i in ids}
        keys = builtins.list(by_hex)
        found: dict[UUID, tuple[str, ...]] = {}
        for start in range(0, len(keys), _SQLITE_MAX_VARS):
            chunk = keys[start : start + _SQLITE_MAX_VARS]
            c.execute(
                f"SELECT id, uses FROM {USES} WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            for event_id, uses in c.fetchall():
                found[by_hex[event_id]] = tuple(json.loads(uses))
        return found

    def _load_usage(
        self, c: sqlite3.Cursor, keys: builtins.list[tuple[str, str]]
    ) -> dict[tuple[str, str], UsageRow]:
        """The stored counters of these (school, key) pairs."""
        found: dict[tuple[str, str], UsageRow] = {}
        schools: dict[str, builtins.list[str]] = {}
        for school, key in keys:
            schools.setdefault(school, []).append(key)
        for school, names in schools.items():
            for start in range(0, len(names), _SQLITE_MAX_VARS):
                chunk = names[start : start + _SQLITE_MAX_VARS]
                c.execute(
                    f"SELECT key, unsent, total, examples FROM {USAGE} WHERE school=? "
                    f"AND key IN ({','.join('?' * len(chunk))})",
                    [school, *chunk],
                )
                for key, unsent, total, examples in c.fetchall():
                    found[(school, key)] = (unsent, total, json.loads(examples))
        return found

    def drop(self) -> None:
        """Delete every row, counter and the view's tracking position (the audit chain is kept)."""
        with self._write() as c:
            self._empty(c)

    def audit_links(self, start: int, limit: int) -> builtins.list[tuple[int, bytes]]:
        """Stored chain links from position `start`, ascending."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT position, hash FROM {CHAIN} WHERE position >= ? ORDER BY position LIMIT ?",
                (start, limit),
            )
            return [(r[0], bytes(r[1])) for r in c.fetchall()]

    def append_audit_links(self, links: Sequence[tuple[int, bytes]]) -> None:
        """Store chain links (links already stored are left as they are)."""
        with self._write() as c:
            c.executemany(f"INSERT OR IGNORE INTO {CHAIN} VALUES (?, ?)", links)

    def listen(self, channel: str) -> PollingListener:
        """SQLite cannot notify: a poller."""
        return PollingListener()

    def close(self) -> None:
        """Close the view's connections."""
        self.datastore.close()

    # --- reads --------------------------------------------------------------------------------

    def _select(self, statement: str, params: Sequence[Any] = ()) -> builtins.list[Any]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            result: builtins.list[Any] = c.fetchall()
            return result

    def get(self, event_id: UUID) -> EventRow | None:
        """One row by id."""
        found = self._select(f"SELECT {_COLUMNS} FROM {ROWS} WHERE id=?", (event_id.hex,))
        return _decode(found[0]) if found else None

    def list(
        self,
        school: str,
        *,
        status: str | None = None,
        statuses: Sequence[str] = (),
        reason_code: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[EventRow]:
        """Rows of one school, oldest first, filtered by status(es) / reason."""
        wanted = sorted({*statuses, *([status] if status else [])})
        statement = f"SELECT {_COLUMNS} FROM {ROWS} WHERE school=?"
        params: builtins.list[Any] = [school]
        if wanted:
            statement += f" AND status IN ({','.join('?' * len(wanted))})"
            params.extend(wanted)
        if reason_code is not None:
            statement += " AND reason_code=?"
            params.append(reason_code)
        statement += " ORDER BY position"
        if limit is not None:
            statement += " LIMIT ?"
            params.append(limit)
        return [_decode(r) for r in self._select(statement, params)]

    def newest_first(
        self,
        school: str,
        *,
        status: str | None = None,
        reason_code: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> builtins.list[EventRow]:
        """A page of rows, newest first, strictly before log position `before` (keyset)."""
        statement = f"SELECT {_COLUMNS} FROM {ROWS} WHERE school=?"
        params: builtins.list[Any] = [school]
        if status is not None:
            statement += " AND status=?"
            params.append(status)
        if reason_code is not None:
            statement += " AND reason_code=?"
            params.append(reason_code)
        if before is not None:
            statement += " AND position<?"
            params.append(before)
        statement += " ORDER BY position DESC LIMIT ?"
        params.append(limit)
        return [_decode(r) for r in self._select(statement, params)]

    def page(self, school: str, query: EventQuery) -> builtins.list[EventRow]:
        """One page of rows, newest first, by keyset on the position (index-backed)."""
        statement = f"SELECT {_COLUMNS} FROM {ROWS} WHERE school=?"
        params: builtins.list[Any] = [school]
        if query.statuses:
            statement += f" AND status IN ({','.join('?' * len(query.statuses))})"
            params.extend(sorted(str(s) for s in query.statuses))
        for column, value in (
            ("reason_code", query.reason_code),
            ("student_id", query.student_id),
        ):
            if value is not None:
                statement += f" AND {column}=?"
                params.append(value)
        if query.search is not None:
            statement += " AND (reference=? OR doc_number=?)"
            params.extend([query.search] * 2)
        if query.since is not None:
            statement += " AND created_at>=?"
            params.append(query.since.isoformat())
        if query.until is not None:
            statement += " AND created_at<?"
            params.append(query.until.isoformat())
        if query.before is not None:
            statement += " AND position<?"
            params.append(query.before)
        statement += " ORDER BY position DESC LIMIT ?"
        params.append(query.limit)
        return [_decode(r) for r in self._select(statement, params)]

    def counts(self, school: str) -> dict[str, int]:
        """Number of rows per status (from the counters)."""
        return counts_from(self.counts_by_kind(school))

    def counts_by_kind(self, school: str) -> dict[tuple[str, str], int]:
        """Number of rows per (status, kind) (from the counters)."""
        found = self._select(
            f"SELECT status, kind, n FROM {COUNTS} WHERE school=? AND n > 0", (school,)
        )
        return {(r[0], r[1]): r[2] for r in found}

    def reason_counts(self, school: str) -> dict[str, int]:
        """Number of Action Required rows per reason code (from the counters)."""
        found = self._select(
            f"SELECT reason_code, n FROM {REASONS} WHERE school=? AND part=? AND n > 0 ORDER BY 1",
            (school, GROUP_ROWS),
        )
        return {r[0]: r[1] for r in found}

    def reason_groups(self, school: str) -> builtins.list[ReasonGroup]:
        """Action Required rows grouped by reason code (counters; one seek per example)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT reason_code, part, n FROM {REASONS} WHERE school=? AND n > 0", (school,)
            )
            reasons = [(r[0], r[1], r[2]) for r in c.fetchall()]

            def example(code: str) -> str:
                match = "reason_code IS NULL" if code == "" else "reason_code = ?"
                c.execute(
                    f"SELECT reference FROM {ROWS} WHERE school = ? AND {match} "
                    "AND status = 'action_required' ORDER BY position LIMIT 1",
                    (school,) if code == "" else (school, code),
                )
                found = c.fetchone()
                return str(found[0]) if found else ""

            return reason_groups_from(reasons, example)

    def student_names(self, school: str, student_ids: Iterable[str]) -> dict[str, str]:
        """Display names of these students, as the log last gave them (unknown ids left out)."""
        wanted = sorted(set(student_ids))
        names: dict[str, str] = {}
        for start in range(0, len(wanted), _SQLITE_MAX_VARS):
            chunk = wanted[start : start + _SQLITE_MAX_VARS]
            for student, name in self._select(
                f"SELECT student_id, name FROM {STUDENTS} WHERE school=? "
                f"AND student_id IN ({','.join('?' * len(chunk))})",
                [school, *chunk],
            ):
                names[student] = name
        return names

    def usage(self, school: str) -> builtins.list[KeyUsage]:
        """Mapping keys in use by the school's events, with counts and examples (by key)."""
        found = self._select(
            f"SELECT key, unsent, total, examples FROM {USAGE} WHERE school=? AND total > 0 "
            "ORDER BY key",
            (school,),
        )
        return [
            KeyUsage(key=k, unsent=n, total=t, examples=tuple(json.loads(e)))
            for k, n, t, e in found
        ]

    def schools(self) -> builtins.list[str]:
        """Schools that have any row."""
        found = self._select(f"SELECT DISTINCT school FROM {COUNTS} WHERE n > 0 ORDER BY 1")
        return [r[0] for r in found]

    def schools_with_work(self) -> builtins.list[str]:
        """Schools that have a row in one of UNSETTLED_STATUSES (from the counters)."""
        statement = (
            f"SELECT DISTINCT school FROM {COUNTS} WHERE status IN ({_UNSETTLED}) AND n > 0 "
            "ORDER BY 1"
        )
        return [r[0] for r in self._select(statement)]
