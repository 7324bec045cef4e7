"""PostgreSQL event store for bulk writes: COPY under the library's table lock and NOTIFY."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from psycopg.sql import SQL, Identifier

from adapters.persistence import widen_datastore_pool

COPY_THRESHOLD = 64  # smaller batches (normal saves) take the library's own INSERT path


@dataclass
class _Group:
    """Saves of several threads that go to the log in one transaction."""

    batches: list[Sequence[StoredEvent]] = field(default_factory=list)
    written: bool = False
    ids: list[Sequence[int] | None] = field(default_factory=list)
    errors: list[BaseException | None] = field(default_factory=list)


class PostgresBulkApplicationRecorder(PostgresApplicationRecorder):
    """The library's PostgreSQL application recorder, inserting large batches with COPY and
    committing the small saves of concurrent threads together.

    Semantics kept: one transaction; LOCK TABLE ... IN EXCLUSIVE MODE first, so notification ids
    are in commit order; NOTIFY on the table's channel, so LISTEN subscribers wake; a duplicate
    (originator_id, originator_version) raises eventsourcing's IntegrityError and writes nothing
    of that save; the new notification ids are returned in order.

    Group commit: the table lock serialises every write to the log, each held through its
    commit's WAL flush (4-30 ms on this machine), so at most one save per flush went in; the
    500-school bench had ~20 connections waiting on the lock. Saves that arrive while this
    process's previous transaction commits wait and then go in one transaction together; each
    caller still returns only after its events are committed. A conflict in a group writes
    nothing; each save of that group is then tried alone, so only the conflicting one fails.
    """

    def widen_pool(self, size: int) -> None:
        """Let the log's pool hold at least `size` connections (a worker's pass threads)."""
        widen_datastore_pool(self.datastore, size)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._collecting: _Group | None = None  # the group the next save joins
        self._group_lock = threading.Lock()
        self._writing = threading.Lock()  # one group transaction of this process at a time

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Group small saves; COPY big batches; tracked writes and the db-functions mode go
        to the library. (Application.save always passes tracking, None when untracked.)"""
        tracked = any(value is not None for value in kwargs.values())
        functions = self.datastore.enable_db_functions
        if len(stored_events) < COPY_THRESHOLD and not tracked and not functions:
            return self._insert_grouped(stored_events)
        if functions or kwargs:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        return self._copy_events(stored_events)

    def _insert_grouped(self, stored_events: Sequence[StoredEvent]) -> Sequence[int] | None:
        with self._group_lock:
            group = self._collecting
            if group is None:
                group = self._collecting = _Group()
            index = len(group.batches)
            group.batches.append(stored_events)
        with self._writing:
            if not group.written:
                with self._group_lock:
                    if self._collecting is group:
                        self._collecting = None  # later saves start the next group
                self._write_group(group)
        error = group.errors[index]
        if error is not None:
            raise error
        return group.ids[index]

    def _write_group(self, group: _Group) -> None:
        """One transaction for the whole group; alone, one by one, after a conflict."""
        n = len(group.batches)
        # until a save is known to be written, its caller gets an error (an interrupted write
        # must never read as a stored one)
        unwritten = PersistenceError("the log write of this save was interrupted")
        group.ids, group.errors = [None] * n, [unwritten] * n
        try:
            if n == 1:
                group.ids[0] = super().insert_events(group.batches[0])
                group.errors[0] = None
                return
            joined = [event for batch in group.batches for event in batch]
            ids = super().insert_events(joined)
            start = 0
            for i, batch in enumerate(group.batches):
                group.ids[i] = None if ids is None else ids[start : start + len(batch)]
                group.errors[i] = None
                start += len(batch)
        except IntegrityError as exc:
            if n == 1:
                group.errors[0] = exc
                return
            for i, batch in enumerate(group.batches):
                try:
                    group.ids[i] = super().insert_events(batch)
                    group.errors[i] = None
                except Exception as alone:  # this save's own failure, for its caller
                    group.errors[i] = alone
        except Exception as exc:  # the database failed: every save of the group with it
            group.errors = [exc] * n
        finally:
            group.written = True

    def _copy_events(self, stored_events: Sequence[StoredEvent]) -> Sequence[int] | None:
        schema, table = Identifier(self.datastore.schema), Identifier(self.events_table_name)
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._lock_table(curs)
            self._notify_channel(curs)
            curs.execute(SQL("SELECT MAX(notification_id) AS max FROM {}.{}").format(schema, table))
            row = curs.fetchone()
            before = int(row["max"]) if row and row["max"] is not None else 0
            copy_sql = SQL(
                "COPY {}.{} (originator_id, originator_version, topic, state) "
                "FROM STDIN (FORMAT BINARY)"
            ).format(schema, table)
            with curs.copy(copy_sql) as copy:
                copy.set_types([self.datastore.originator_id_type, "int8", "text", "bytea"])
                for s in stored_events:
                    copy.write_row((s.originator_id, s.originator_version, s.topic, s.state))
            curs.execute(
                SQL(
                    "SELECT notification_id FROM {}.{} WHERE notification_id > %s "
                    "ORDER BY notification_id"
                ).format(schema, table),
                (before,),
            )
            return [int(r["notification_id"]) for r in curs.fetchall()]

    def existing_originator_ids(self, originator_ids: Iterable[UUID]) -> set[UUID]:
        """Which of these aggregates already have events (one query)."""
        wanted = list(dict.fromkeys(originator_ids))
        if not wanted:
            return set()
        query = SQL(
            "SELECT DISTINCT originator_id FROM {}.{} WHERE originator_id = ANY(%s::uuid[])"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, ([u.hex for u in wanted],))
            return {UUID(str(r["originator_id"])) for r in curs.fetchall()}

    def select_events_after(self, floors: Sequence[tuple[UUID, int]]) -> list[StoredEvent]:
        """The events of several aggregates after a version each (0: all of it), in one query,
        each aggregate's in version order (domain.ports.BulkEventReads)."""
        if not floors:
            return []
        query = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {}.{} e "
            "JOIN unnest(%s::uuid[], %s::bigint[]) AS w(id, v) "
            "ON e.originator_id = w.id AND e.originator_version > w.v "
            "ORDER BY e.originator_id, e.originator_version"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, ([i for i, _ in floors], [v for _, v in floors]), prepare=True)
            return [
                StoredEvent(
                    originator_id=r["originator_id"],
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                )
                for r in curs.fetchall()
            ]

    def log_positions(self, originator_id: UUID) -> dict[int, int]:
        """originator_version -> log position (notification id) of one aggregate's events."""
        query = SQL(
            "SELECT originator_version, notification_id FROM {}.{} WHERE originator_id = %s"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, (originator_id,))
            return {
                int(r["originator_version"]): int(r["notification_id"]) for r in curs.fetchall()
            }


class PostgresBulkFactory(PostgresFactory):
    """PostgresFactory whose application recorder is PostgresBulkApplicationRecorder."""

    application_recorder_class = PostgresBulkApplicationRecorder
