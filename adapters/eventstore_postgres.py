"""PostgreSQL event store for bulk writes: COPY under the library's table lock and NOTIFY."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from psycopg.sql import SQL, Identifier

from adapters.persistence import widen_datastore_pool

COPY_THRESHOLD = 64  # smaller batches (normal saves) take the library's own INSERT path


class PostgresBulkApplicationRecorder(PostgresApplicationRecorder):
    """The library's PostgreSQL application recorder, inserting large batches with COPY.

    Semantics kept: one transaction; LOCK TABLE ... IN EXCLUSIVE MODE first, so notification ids
    are in commit order; NOTIFY on the table's channel, so LISTEN subscribers wake; a duplicate
    (originator_id, originator_version) raises eventsourcing's IntegrityError and writes nothing;
    the new notification ids are returned in order.
    """

    def widen_pool(self, size: int) -> None:
        """Let the log's pool hold at least `size` connections (a worker's pass threads)."""
        widen_datastore_pool(self.datastore, size)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """COPY big batches; delegate small ones (and the db-functions mode) to the library."""
        if len(stored_events) < COPY_THRESHOLD or self.datastore.enable_db_functions or kwargs:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
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
