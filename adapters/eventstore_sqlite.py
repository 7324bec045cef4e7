"""SQLite event store for bulk writes: executemany in one transaction, bulk existence checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteFactory

_IN_CHUNK = 900  # well under SQLite's limit on bound parameters


class SQLiteBulkApplicationRecorder(SQLiteApplicationRecorder):
    """The library's SQLite application recorder, inserting a batch with one executemany."""

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        **_: Any,
    ) -> Sequence[int] | None:
        """Insert all rows at once; their rowids (notification ids) are consecutive."""
        if not stored_events:
            return []
        params = [
            (
                s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
                s.originator_version,
                s.topic,
                s.state,
            )
            for s in stored_events
        ]
        c.executemany(self.insert_events_statement, params)
        # Inside one write transaction each new rowid is the previous maximum plus one.
        c.execute("SELECT last_insert_rowid()")
        last = int(c.fetchone()[0])
        return list(range(last - len(params) + 1, last + 1))

    def existing_originator_ids(self, originator_ids: Iterable[UUID]) -> set[UUID]:
        """Which of these aggregates already have events (one query per 900 ids)."""
        wanted = list(dict.fromkeys(originator_ids))
        found: set[UUID] = set()
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[i : i + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                c.execute(
                    f"SELECT DISTINCT originator_id FROM {self.events_table_name} "
                    f"WHERE originator_id IN ({marks})",
                    [u.hex for u in chunk],
                )
                found.update(UUID(row["originator_id"]) for row in c.fetchall())
        return found

    def select_events_after(self, floors: Sequence[tuple[UUID, int]]) -> list[StoredEvent]:
        """The events of several aggregates after a version each (0: all of it), in one read
        transaction, each aggregate's in version order (domain.ports.BulkEventReads)."""
        found: list[StoredEvent] = []
        with self.datastore.transaction(commit=False) as c:
            for originator_id, version in floors:
                c.execute(
                    f"SELECT originator_id, originator_version, topic, state "
                    f"FROM {self.events_table_name} "
                    "WHERE originator_id = ? AND originator_version > ? "
                    "ORDER BY originator_version",
                    [originator_id.hex, version],
                )
                found.extend(
                    StoredEvent(
                        originator_id=self.convert_originator_id(row["originator_id"]),
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=row["state"],
                    )
                    for row in c.fetchall()
                )
        return found

    def log_positions(self, originator_id: UUID) -> dict[int, int]:
        """originator_version -> log position (notification id) of one aggregate's events."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT originator_version, rowid FROM {self.events_table_name} "
                "WHERE originator_id = ?",
                [originator_id.hex],
            )
            return {int(row[0]): int(row[1]) for row in c.fetchall()}


class SQLiteBulkFactory(SQLiteFactory):
    """SQLiteFactory whose application recorder is SQLiteBulkApplicationRecorder."""

    application_recorder_class = SQLiteBulkApplicationRecorder
