"""The financial-event view in PostgreSQL, in the same schema as the log."""

from __future__ import annotations

import builtins
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload
from uuid import UUID

import psycopg
from eventsourcing.persistence import Notification, OperationalError
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import sql

from adapters.persistence import widen_datastore_pool
from projections import audit
from projections.financial_events import (
    COL_AMOUNT,
    COL_CORRECTIONS,
    COL_CREATED_AT,
    COL_MISSING,
    COL_QBO_AMOUNT,
    COL_UPDATED_AT,
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

STAGE = "flightledger_view_stage"  # per-session temporary table the batch is copied into
LINK_STAGE = "flightledger_audit_stage"
ROWS = "flightledger_view_rows"
TRACKING = "flightledger_view_tracking"
CHAIN = "flightledger_audit_chain"
USES = "flightledger_view_uses"  # the mapping keys each financial event uses
USAGE = "flightledger_view_usage"  # per school and key: unsent and total counts, examples
USES_STAGE = "flightledger_view_uses_stage"
COUNTS = "flightledger_view_counts"  # rows per school, status and kind
REASONS = "flightledger_view_reasons"  # action-required rows per school, reason, missing key
STUDENTS = "flightledger_view_students"  # each student's display name, per school
META = "flightledger_view_meta"  # the layout's version (projections.view.VIEW_VERSION)
_COLUMNS = sql.SQL(", ").join(sql.Identifier(c) for c in RAW_COLUMNS)  # the row layout
# Each column's SQL type (the names and their order are RAW_COLUMNS'): the rows table's DDL.
_ROW_TYPES = {
    "id": "uuid PRIMARY KEY",
    "school": "text NOT NULL",
    "kind": "text NOT NULL",
    "reference": "text NOT NULL",
    "student_id": "text NOT NULL",
    "amount": "numeric NOT NULL",
    "status": "text NOT NULL",
    "reason_code": "text",
    "reason": "text NOT NULL",
    "missing": "text[] NOT NULL",
    "attempts": "integer NOT NULL",
    "qbo_id": "text",
    "doc_number": "text",
    "updated_at": "timestamptz NOT NULL",
    "applies_to": "text",
    "created_at": "timestamptz",
    "position": "bigint NOT NULL",
    "qbo_amount": "numeric",
    "corrections": "text NOT NULL DEFAULT ''",
}
_ROWS_DDL = ", ".join(f"{c} {_ROW_TYPES[c]}" for c in RAW_COLUMNS)  # KeyError: a new column
# literals, not parameters: the planner then uses the partial index
_UNSETTLED = sql.SQL(", ").join(sql.Literal(s) for s in UNSETTLED_STATUSES)


def _raw(r: dict[str, Any]) -> RawRow:
    """A stored row in raw form (projections.financial_events): what fold_raw reads."""
    raw = [r[c] for c in RAW_COLUMNS]
    raw[COL_AMOUNT] = str(raw[COL_AMOUNT])
    raw[COL_MISSING] = tuple(raw[COL_MISSING])
    raw[COL_UPDATED_AT] = raw[COL_UPDATED_AT].isoformat()
    created, qbo_amount = raw[COL_CREATED_AT], raw[COL_QBO_AMOUNT]
    raw[COL_CREATED_AT] = None if created is None else created.isoformat()
    raw[COL_QBO_AMOUNT] = None if qbo_amount is None else str(qbo_amount)
    raw[COL_CORRECTIONS] = raw[COL_CORRECTIONS] or ""
    return raw


def _copy_values(rows: Iterable[RawRow]) -> Iterator[builtins.list[Any]]:
    """Raw rows as COPY values: `missing` as a text array, everything else as it is."""
    for row in rows:
        values = builtins.list(row)
        missing = row[COL_MISSING]
        values[COL_MISSING] = builtins.list(missing) if missing else "{}"
        yield values


def _json_rows(rows: Iterable[RawRow]) -> str:
    """Raw rows as a JSON array of objects by column name (jsonb_populate_recordset's input):
    the amounts and timestamps as the strings the raw row holds, so PostgreSQL stores exactly
    what the row holds, as COPY's text did."""
    return json.dumps(
        [dict(zip(RAW_COLUMNS, row, strict=True)) for row in rows], default=_json_value
    )


def _json_value(value: object) -> object:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, tuple):
        return builtins.list(value)
    raise TypeError(f"not a view value: {type(value).__name__}")


def _usage(counter: tuple[str, str, int, int, builtins.list[str]]) -> dict[str, Any]:
    school, key, unsent, total, examples = counter
    return {"school": school, "key": key, "unsent": unsent, "total": total, "examples": examples}


def _decode(r: dict[str, Any]) -> EventRow:
    """A stored row (psycopg has already typed its values) as an EventRow."""
    row = [r[c] for c in RAW_COLUMNS]
    row[COL_MISSING] = tuple(row[COL_MISSING])
    row[COL_CORRECTIONS] = row[COL_CORRECTIONS] or ""
    return EventRow(*row)


class PostgresListener:
    """LISTEN on the log's channel on a connection of its own; raises when it dies."""

    def __init__(self, conninfo: dict[str, Any], channel: str) -> None:
        try:
            self._conn = psycopg.connect(autocommit=True, **conninfo)
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as exc:
            raise OperationalError(str(exc)) from exc
        self.pid: int | None = self._conn.info.backend_pid

    def wait(self, timeout: float) -> bool:
        """Block up to timeout seconds; True when a NOTIFY arrived."""
        try:
            return any(True for _ in self._conn.notifies(timeout=timeout, stop_after=1))
        except psycopg.Error as exc:
            raise OperationalError(f"lost the LISTEN connection: {exc}") from exc

    def close(self) -> None:
        """Close the listening connection."""
        self._conn.close()


# the events tab's filters, each walked newest first by keyset on the position
PAGE_INDEXES = (
    ("status_page", "school, status, position"),
    ("reason_page", "school, reason_code, position"),
    ("student_page", "school, student_id, position"),
    ("reference", "school, reference"),
    ("doc_number", "school, doc_number"),
)


class PostgresFinancialEventView(PostgresTrackingRecorder):
    """Rows, tracking position and audit chain in tables next to the PostgreSQL log."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        tracking_table_name: str = TRACKING,
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        schema = sql.Identifier(self.datastore.schema)
        self._rows = sql.SQL("{}.{}").format(schema, sql.Identifier(ROWS))
        self._chain = sql.SQL("{}.{}").format(schema, sql.Identifier(CHAIN))
        self._tracking = sql.SQL("{}.{}").format(schema, sql.Identifier(self.tracking_table_name))
        self._uses = sql.SQL("{}.{}").format(schema, sql.Identifier(USES))
        self._usage = sql.SQL("{}.{}").format(schema, sql.Identifier(USAGE))
        self._counts = sql.SQL("{}.{}").format(schema, sql.Identifier(COUNTS))
        self._reasons = sql.SQL("{}.{}").format(schema, sql.Identifier(REASONS))
        self._students = sql.SQL("{}.{}").format(schema, sql.Identifier(STUDENTS))
        self._meta = sql.SQL("{}.{}").format(schema, sql.Identifier(META))
        self._lock_key = f"flightledger_view:{self.datastore.schema}"
        # The rows table's secondary indexes, by name: a from-empty load (`load`) drops them
        # and creates them again after the rows are in, instead of keeping them up row by row.
        self._row_indexes: dict[str, sql.Composed] = {
            f"{ROWS}_{name}": sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(f"{ROWS}_{name}"), self._rows, sql.SQL(columns)
            )
            for name, columns in (("school_position", "school, position"), *PAGE_INDEXES)
        }
        # a reason group's example: its oldest action-required row, one seek
        self._row_indexes[f"{ROWS}_action_required"] = sql.SQL(
            "CREATE INDEX IF NOT EXISTS {} ON {} (school, reason_code, position) "
            "WHERE status = 'action_required'"
        ).format(sql.Identifier(f"{ROWS}_action_required"), self._rows)
        unsent = sql.SQL(", ").join(sql.Literal(s) for s in sorted(UNSENT_STATUSES))
        action = sql.Literal("action_required")
        # A from-empty load counts the loaded rows once, by GROUP BY (what apply_batch keeps
        # up batch by batch; tests/integration/test_view_load.py compares the two).
        self._load_counts = (
            sql.SQL(
                "INSERT INTO {} SELECT school, status, kind, count(*) FROM {} "
                "GROUP BY school, status, kind"
            ).format(self._counts, self._rows),
            # a reason group's own count (part GROUP_ROWS, ''), then each missing key per row
            sql.SQL(
                "INSERT INTO {} SELECT school, coalesce(reason_code, ''), '', count(*) FROM {} "
                "WHERE status = {} GROUP BY school, coalesce(reason_code, '')"
            ).format(self._reasons, self._rows, action),
            sql.SQL(
                "INSERT INTO {} SELECT school, code, part, count(*) FROM (SELECT DISTINCT r.id, "
                "r.school, coalesce(r.reason_code, '') AS code, m.part FROM {} r, "
                "unnest(r.missing) AS m(part) WHERE r.status = {} AND m.part <> '') s "
                "GROUP BY school, code, part"
            ).format(self._reasons, self._rows, action),
            # examples: each key's oldest unsent references by log position
            sql.SQL(
                "INSERT INTO {} SELECT school, key, count(*) FILTER (WHERE unsent), count(*), "
                "coalesce(array_agg(reference ORDER BY position) "
                "FILTER (WHERE unsent AND n <= {}), '{{}}') "
                "FROM (SELECT r.school, k.key, r.reference, r.position, "
                "r.status IN ({}) AS unsent, row_number() OVER (PARTITION BY r.school, k.key, "
                "r.status IN ({}) ORDER BY r.position) AS n FROM {} r JOIN {} u ON u.id = r.id, "
                "unnest(u.uses) AS k(key)) s GROUP BY school, key"
            ).format(
                self._usage,
                sql.Literal(USAGE_EXAMPLES),
                unsent,
                unsent,
                self._rows,
                self._uses,
            ),
        )
        self.sql_create_statements.extend(
            [
                sql.SQL("CREATE TABLE IF NOT EXISTS {} (" + _ROWS_DDL + ")").format(self._rows),
                sql.SQL(  # views made before these columns existed (no lock when present)
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.columns "
                    "WHERE table_schema = {} AND table_name = {} AND column_name = 'corrections') "
                    "THEN ALTER TABLE {} "
                    f"ADD COLUMN IF NOT EXISTS qbo_amount {_ROW_TYPES['qbo_amount']}, "
                    f"ADD COLUMN IF NOT EXISTS corrections {_ROW_TYPES['corrections']}; "
                    "END IF; END $$"
                ).format(sql.Literal(self.datastore.schema), sql.Literal(ROWS), self._rows),
                # (school, status) is status_page's prefix and schools_with_work reads the
                # counters: both indexes only slowed every row write; views made with them
                sql.SQL("DROP INDEX IF EXISTS {}").format(
                    sql.Identifier(self.datastore.schema, f"{ROWS}_school_status")
                ),
                sql.SQL("DROP INDEX IF EXISTS {}").format(
                    sql.Identifier(self.datastore.schema, f"{ROWS}_unsettled")
                ),
                *self._row_indexes.values(),
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, "
                    "hash bytea NOT NULL)"
                ).format(self._chain),
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY, uses text[] NOT NULL)"
                ).format(self._uses),
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (school text NOT NULL, key text NOT NULL, "
                    "unsent bigint NOT NULL, total bigint NOT NULL, examples text[] NOT NULL, "
                    "PRIMARY KEY (school, key))"
                ).format(self._usage),
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (school text NOT NULL, status text NOT NULL, "
                    "kind text NOT NULL, n bigint NOT NULL, PRIMARY KEY (school, status, kind))"
                ).format(self._counts),
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (school text NOT NULL, "
                    "reason_code text NOT NULL, part text NOT NULL, n bigint NOT NULL, "
                    "PRIMARY KEY (school, reason_code, part))"
                ).format(self._reasons),
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (school text NOT NULL, "
                    "student_id text NOT NULL, name text NOT NULL, "
                    "PRIMARY KEY (school, student_id))"
                ).format(self._students),
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, value bigint NOT NULL)"
                ).format(self._meta),
            ]
        )
        self._counts_add = sql.SQL(
            "INSERT INTO {0} AS t SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
            "%s::bigint[]) ON CONFLICT (school, status, kind) DO UPDATE SET n = t.n + EXCLUDED.n"
        ).format(self._counts)
        self._reasons_add = sql.SQL(
            "INSERT INTO {0} AS t SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
            "%s::bigint[]) ON CONFLICT (school, reason_code, part) "
            "DO UPDATE SET n = t.n + EXCLUDED.n"
        ).format(self._reasons)
        self._students_set = sql.SQL(
            "INSERT INTO {} SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) "
            "ON CONFLICT (school, student_id) DO UPDATE SET name = EXCLUDED.name"
        ).format(self._students)
        self._uses_stage_create = sql.SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS"
        ).format(sql.Identifier(USES_STAGE), self._uses)
        self._uses_stage_copy = sql.SQL("COPY {} (id, uses) FROM STDIN").format(
            sql.Identifier(USES_STAGE)
        )
        self._uses_stage_upsert = sql.SQL(
            "INSERT INTO {} (id, uses) SELECT id, uses FROM {} "
            "ON CONFLICT (id) DO UPDATE SET uses = EXCLUDED.uses"
        ).format(self._uses, sql.Identifier(USES_STAGE))
        # A batch writes each table in one statement, its rows as one JSON array (a row's
        # arrays, `missing` and `examples`, cannot go through unnest): no stage table, COPY or
        # statement per row.
        self._usage_upsert = sql.SQL(
            "INSERT INTO {0} SELECT * FROM jsonb_populate_recordset(NULL::{0}, %s::jsonb) "
            "ON CONFLICT (school, key) DO UPDATE "
            "SET unsent = EXCLUDED.unsent, total = EXCLUDED.total, examples = EXCLUDED.examples"
        ).format(self._usage)
        self._uses_upsert = sql.SQL(
            "INSERT INTO {0} (id, uses) SELECT id, uses FROM "
            "jsonb_populate_recordset(NULL::{0}, %s::jsonb) "
            "ON CONFLICT (id) DO UPDATE SET uses = EXCLUDED.uses"
        ).format(self._uses)
        updated = [c for c in RAW_COLUMNS if c not in ("id", "position")]
        self._upsert = sql.SQL(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}"
        ).format(
            self._rows,
            _COLUMNS,
            sql.SQL(", ").join(sql.Placeholder() * len(RAW_COLUMNS)),
            sql.SQL(", ").join(
                sql.SQL("{0}=EXCLUDED.{0}").format(sql.Identifier(c)) for c in updated
            ),
        )
        self._stage_create = sql.SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS"
        ).format(sql.Identifier(STAGE), self._rows)
        self._stage_copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(STAGE), _COLUMNS
        )
        self._rows_copy = sql.SQL("COPY {} ({}) FROM STDIN").format(self._rows, _COLUMNS)
        self._uses_copy = sql.SQL("COPY {} (id, uses) FROM STDIN").format(self._uses)
        self._stage_upsert = sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT (id) DO UPDATE SET {}"
        ).format(
            self._rows,
            _COLUMNS,
            _COLUMNS,
            sql.Identifier(STAGE),
            sql.SQL(", ").join(
                sql.SQL("{0}=EXCLUDED.{0}").format(sql.Identifier(c)) for c in updated
            ),
        )
        self._rows_upsert = sql.SQL(
            "INSERT INTO {0} ({1}) SELECT {1} FROM jsonb_populate_recordset(NULL::{0}, %s::jsonb) "
            "ON CONFLICT (id) DO UPDATE SET {2}"
        ).format(
            self._rows,
            _COLUMNS,
            sql.SQL(", ").join(
                sql.SQL("{0}=EXCLUDED.{0}").format(sql.Identifier(c)) for c in updated
            ),
        )
        self._links_insert = sql.SQL(
            "INSERT INTO {} (position, hash) SELECT * FROM unnest(%s::bigint[], %s::bytea[]) "
            "ON CONFLICT (position) DO NOTHING"
        ).format(self._chain)
        self._link_stage_create = sql.SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS"
        ).format(sql.Identifier(LINK_STAGE), self._chain)
        self._link_stage_copy = sql.SQL("COPY {} (position, hash) FROM STDIN").format(
            sql.Identifier(LINK_STAGE)
        )
        self._link_stage_insert = sql.SQL(
            "INSERT INTO {} (position, hash) SELECT position, hash FROM {} "
            "ON CONFLICT (position) DO NOTHING"
        ).format(self._chain, sql.Identifier(LINK_STAGE))
        self._insert_link = sql.SQL(
            "INSERT INTO {} VALUES (%s, %s) ON CONFLICT (position) DO NOTHING"
        ).format(self._chain)

    # --- tracking -----------------------------------------------------------------------------

    @overload
    def max_tracking_id(self) -> int: ...

    @overload
    def max_tracking_id(self, application_name: str) -> int | None: ...

    def max_tracking_id(self, application_name: str | None = None) -> int | None:
        """With no name: the view's position (0 when empty); else the library's contract."""
        found: int | None = super().max_tracking_id(application_name or VIEW_TRACKING_NAME)
        if application_name is None:
            return found or 0
        return found

    # --- writes -------------------------------------------------------------------------------

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
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_key,))
            curs.execute(
                sql.SQL("SELECT notification_id FROM {} WHERE application_name=%s").format(
                    self._tracking
                ),
                (VIEW_TRACKING_NAME,),
            )
            found = curs.fetchone()
            current = found["notification_id"] if found else 0
            if current != previous:
                msg = f"view is at {current}, batch expected {previous}"
                raise TrackingConflict(msg)
            curs.execute(
                self.insert_tracking_statement,
                {"application_name": VIEW_TRACKING_NAME, "notification_id": position},
            )
            ids = builtins.list(raw_ids_to_load(changes))
            existing: dict[UUID, RawRow] = {}
            if ids:
                curs.execute(
                    sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(_COLUMNS, self._rows),
                    (ids,),
                )
                for r in curs.fetchall():
                    existing[r["id"]] = _raw(r)
            changed = fold_raw(existing, changes)
            if changed:
                curs.execute(self._rows_upsert, (_json_rows(changed.values()),))
            uses, counters = usage_writes(
                existing,
                changed,
                changes,
                lambda wanted: self._load_uses(curs, wanted),
                lambda keys: self._load_usage(curs, keys),
            )
            if uses:
                curs.execute(
                    self._uses_upsert,
                    (json.dumps([{"id": str(i), "uses": builtins.list(k)} for i, k in uses]),),
                )
            if counters:
                curs.execute(self._usage_upsert, (json.dumps([_usage(c) for c in counters]),))
            self._write_counts(curs, existing, changed, changes)
            curs.execute(
                sql.SQL("SELECT position, hash FROM {} ORDER BY position DESC LIMIT 1").format(
                    self._chain
                )
            )
            head = curs.fetchone()
            links = audit.extend(
                head["position"] if head else 0,
                bytes(head["hash"]) if head else audit.GENESIS,
                notifications,
            )
            if links:
                curs.execute(self._links_insert, ([p for p, _ in links], [h for _, h in links]))
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
        when the transaction starts, else TrackingConflict and nothing is written. Other
        projectors wait for the load (the view's advisory lock); reads of the rows table wait
        for it too (DROP INDEX takes its exclusive lock), and then see the whole load. Returns
        the number of rows written.
        """
        pending = iter(batches)
        first = next(pending, None)
        if first is None and not replace:
            return 0
        written = 0
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_key,))
            if not replace:
                curs.execute(
                    sql.SQL("SELECT notification_id FROM {} WHERE application_name=%s").format(
                        self._tracking
                    ),
                    (VIEW_TRACKING_NAME,),
                )
                found = curs.fetchone()
                if found and found["notification_id"]:
                    msg = f"view is at {found['notification_id']}, a from-empty load expected 0"
                    raise TrackingConflict(msg)
            self._empty(curs)
            if first is None:
                return 0
            for name in self._row_indexes:
                curs.execute(
                    sql.SQL("DROP INDEX IF EXISTS {}").format(
                        sql.Identifier(self.datastore.schema, name)
                    )
                )
            curs.execute(
                sql.SQL("SELECT position, hash FROM {} ORDER BY position DESC LIMIT 1").format(
                    self._chain
                )
            )
            head = curs.fetchone()
            head_position = head["position"] if head else 0
            head_hash = bytes(head["hash"]) if head else audit.GENESIS
            fold = LoadFold()
            position = 0
            for changes, notifications in itertools.chain([first], pending):
                ids = builtins.list(fold.ids_to_load(changes))
                loaded: dict[UUID, RawRow] = {}
                if ids:
                    curs.execute(
                        sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(
                            _COLUMNS, self._rows
                        ),
                        (ids,),
                    )
                    for r in curs.fetchall():
                        loaded[r["id"]] = _raw(r)
                fold.apply(loaded, changes)
                if fold.full():
                    written += self._write_loaded(curs, fold)
                links = audit.extend(head_position, head_hash, notifications)
                if links:
                    self._copy_links(curs, links, fresh=True)
                    head_position, head_hash = links[-1]
                position = max(position, notifications[-1].id)
            written += self._write_loaded(curs, fold)
            for statement in self._load_counts:
                curs.execute(statement)
            names = fold.names
            if names:
                curs.execute(
                    self._students_set,
                    (
                        [k[0] for k in names],
                        [k[1] for k in names],
                        builtins.list(names.values()),
                    ),
                )
            for statement in self._row_indexes.values():
                curs.execute(statement)
            curs.execute(sql.SQL("ANALYZE {}").format(self._rows))
            curs.execute(
                self.insert_tracking_statement,
                {"application_name": VIEW_TRACKING_NAME, "notification_id": position},
            )
            self._before_commit()
        return written

    def _write_loaded(self, curs: Any, fold: LoadFold) -> int:
        """Write the rows a load holds: new ones COPYed straight into the table, the others
        through the stage, over themselves."""
        (new, new_uses), (again, again_uses) = fold.take()
        if new:
            with curs.copy(self._rows_copy) as copy:
                for values in _copy_values(new):
                    copy.write_row(values)
        if new_uses:
            with curs.copy(self._uses_copy) as copy:
                for event_id, keys in new_uses:
                    copy.write_row((event_id, list(keys) if keys else "{}"))
        if again:
            self._copy_rows(curs, again, fresh=True)
        if again_uses:
            curs.execute(self._uses_stage_create)
            curs.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(USES_STAGE)))
            with curs.copy(self._uses_stage_copy) as copy:
                for event_id, keys in again_uses:
                    copy.write_row((event_id, list(keys) if keys else "{}"))
            curs.execute(self._uses_stage_upsert)
        return len(new) + len(again)

    def _write_counts(
        self,
        curs: Any,
        existing: dict[UUID, RawRow],
        changed: dict[UUID, RawRow],
        changes: Sequence[tuple[int, Any]],
    ) -> None:
        """Move the row counters and store the students' names (same transaction)."""
        deltas = count_deltas(existing, changed)
        for statement, writes in (
            (self._counts_add, deltas.status_writes()),
            (self._reasons_add, deltas.reason_writes()),
        ):
            if writes:
                curs.execute(statement, [builtins.list(c) for c in zip(*writes, strict=True)])
        names = batch_student_names(changed, changes)
        if names:
            curs.execute(
                self._students_set,
                (
                    [k[0] for k in names],
                    [k[1] for k in names],
                    builtins.list(names.values()),
                ),
            )

    def _load_uses(self, curs: Any, ids: builtins.set[UUID]) -> dict[UUID, tuple[str, ...]]:
        """The stored mapping keys of these events."""
        if not ids:
            return {}
        curs.execute(
            sql.SQL("SELECT id, uses FROM {} WHERE id = ANY(%s)").format(self._uses),
            (builtins.list(ids),),
        )
        return {r["id"]: tuple(r["uses"]) for r in curs.fetchall()}

    def _load_usage(
        self, curs: Any, keys: builtins.list[tuple[str, str]]
    ) -> dict[tuple[str, str], UsageRow]:
        """The stored counters of these (school, key) pairs."""
        curs.execute(
            sql.SQL(
                "SELECT u.school, u.key, u.unsent, u.total, u.examples FROM {} u "
                "JOIN unnest(%s::text[], %s::text[]) AS w(school, key) "
                "ON u.school = w.school AND u.key = w.key"
            ).format(self._usage),
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return {
            (r["school"], r["key"]): (r["unsent"], r["total"], builtins.list(r["examples"]))
            for r in curs.fetchall()
        }

    def create_table(self) -> None:
        """Create the tables; a view stored under an older layout (VIEW_VERSION) is emptied,
        to be projected again from the start of the log."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT to_regclass(%s) AS rows, to_regclass(%s) AS meta",
                (f"{self.datastore.schema}.{ROWS}", f"{self.datastore.schema}.{META}"),
            )
            found = curs.fetchone()
            version = VIEW_VERSION
            if found and found["rows"] is not None:
                version = 0
                if found["meta"] is not None:
                    curs.execute(
                        sql.SQL("SELECT value FROM {} WHERE name = 'version'").format(self._meta)
                    )
                    stored = curs.fetchone()
                    version = int(stored["value"]) if stored else 0
        if version > VIEW_VERSION:
            msg = (
                f"the view was built by a newer flightledger (layout {version}, this one reads "
                f"{VIEW_VERSION}): upgrade flightledger"
            )
            raise OperationalError(msg)
        super().create_table()
        if version != VIEW_VERSION:
            self.drop()  # rows without today's counters: project again from the start
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                sql.SQL(
                    "INSERT INTO {} VALUES ('version', %s) ON CONFLICT (name) "
                    "DO UPDATE SET value = EXCLUDED.value WHERE {}.value <> EXCLUDED.value"
                ).format(self._meta, self._meta),
                (VIEW_VERSION,),
            )

    def _copy_rows(self, curs: Any, rows: Iterable[RawRow], *, fresh: bool = False) -> None:
        """COPY the rows into the session's stage table, then upsert them in one statement.

        Values go as text: the amount as its decimal string, timestamps as ISO strings with
        their offset, so PostgreSQL stores exactly what the row holds. `fresh`: empty the stage
        first (it is emptied on commit; a load copies many batches in one transaction).
        """
        curs.execute(self._stage_create)
        if fresh:
            curs.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(STAGE)))
        with curs.copy(self._stage_copy) as copy:
            write = copy.write_row
            for values in _copy_values(rows):
                write(values)
        curs.execute(self._stage_upsert)

    def _copy_links(
        self, curs: Any, links: Sequence[tuple[int, bytes]], *, fresh: bool = False
    ) -> None:
        """COPY chain links into the stage table, then insert those not stored yet (`fresh`:
        empty the stage first)."""
        curs.execute(self._link_stage_create)
        if fresh:
            curs.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(LINK_STAGE)))
        with curs.copy(self._link_stage_copy) as copy:
            write = copy.write_row
            for link in links:
                write(link)
        curs.execute(self._link_stage_insert)

    def drop(self) -> None:
        """Delete every row and the view's tracking position (the audit chain is kept)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_key,))
            self._empty(curs)

    def _empty(self, curs: Any) -> None:
        """Delete every row and counter and the view's tracking position."""
        for table in (
            self._rows,
            self._uses,
            self._usage,
            self._counts,
            self._reasons,
            self._students,
        ):
            curs.execute(sql.SQL("DELETE FROM {}").format(table))
        curs.execute(
            sql.SQL("DELETE FROM {} WHERE application_name=%s").format(self._tracking),
            (VIEW_TRACKING_NAME,),
        )

    def audit_links(self, start: int, limit: int) -> builtins.list[tuple[int, bytes]]:
        """Stored chain links from position `start`, ascending."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                sql.SQL(
                    "SELECT position, hash FROM {} WHERE position >= %s ORDER BY position LIMIT %s"
                ).format(self._chain),
                (start, limit),
            )
            return [(r["position"], bytes(r["hash"])) for r in curs.fetchall()]

    def append_audit_links(self, links: Sequence[tuple[int, bytes]]) -> None:
        """Store chain links (links already stored are left as they are)."""
        if not links:
            return
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_key,))
            curs.executemany(self._insert_link, links)

    def listen(self, channel: str) -> PostgresListener:
        """LISTEN on the log's channel (a connection outside the pool)."""
        raw = self.datastore.pool.kwargs
        kwargs = dict(raw) if isinstance(raw, dict) else {}
        kwargs.pop("row_factory", None)
        return PostgresListener(kwargs, channel)

    def widen_pool(self, size: int) -> None:
        """Let the view's pool hold at least `size` connections (a worker's pass threads)."""
        widen_datastore_pool(self.datastore, size)

    def close(self) -> None:
        """Close the view's connections."""
        self.datastore.close()

    # --- reads --------------------------------------------------------------------------------

    def _select(self, statement: sql.Composed, params: Sequence[Any] = ()) -> builtins.list[Any]:
        """One statement on an autocommit connection: no BEGIN/ROLLBACK around it (a rollback
        also makes psycopg drop the connection's prepared statements, DEALLOCATE ALL)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params)
            return curs.fetchall()

    def get(self, event_id: UUID) -> EventRow | None:
        """One row by id."""
        found = self._select(
            sql.SQL("SELECT {} FROM {} WHERE id=%s").format(_COLUMNS, self._rows), (event_id,)
        )
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
        statement = sql.SQL("SELECT {} FROM {} WHERE school=%s").format(_COLUMNS, self._rows)
        params: builtins.list[Any] = [school]
        if wanted:
            statement += sql.SQL(" AND status = ANY(%s)")
            params.append(wanted)
        if reason_code is not None:
            statement += sql.SQL(" AND reason_code=%s")
            params.append(reason_code)
        statement += sql.SQL(" ORDER BY position")
        if limit is not None:
            statement += sql.SQL(" LIMIT %s")
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
        statement = sql.SQL("SELECT {} FROM {} WHERE school=%s").format(_COLUMNS, self._rows)
        params: builtins.list[Any] = [school]
        if status is not None:
            statement += sql.SQL(" AND status=%s")
            params.append(status)
        if reason_code is not None:
            statement += sql.SQL(" AND reason_code=%s")
            params.append(reason_code)
        if before is not None:
            statement += sql.SQL(" AND position<%s")
            params.append(before)
        statement += sql.SQL(" ORDER BY position DESC LIMIT %s")
        params.append(limit)
        return [_decode(r) for r in self._select(statement, params)]

    def page(self, school: str, query: EventQuery) -> builtins.list[EventRow]:
        """One page of rows, newest first, by keyset on the position (index-backed)."""
        statement = sql.SQL("SELECT {} FROM {} WHERE school=%s").format(_COLUMNS, self._rows)
        params: builtins.list[Any] = [school]
        if query.statuses:
            statement += sql.SQL(" AND status = ANY(%s)")
            params.append(sorted(str(s) for s in query.statuses))
        if query.reason_code is not None:
            statement += sql.SQL(" AND reason_code=%s")
            params.append(query.reason_code)
        if query.student_id is not None:
            statement += sql.SQL(" AND student_id=%s")
            params.append(query.student_id)
        if query.search is not None:
            statement += sql.SQL(" AND (reference=%s OR doc_number=%s)")
            params.extend([query.search] * 2)
        if query.since is not None:
            statement += sql.SQL(" AND created_at>=%s")
            params.append(query.since)
        if query.until is not None:
            statement += sql.SQL(" AND created_at<%s")
            params.append(query.until)
        if query.before is not None:
            statement += sql.SQL(" AND position<%s")
            params.append(query.before)
        statement += sql.SQL(" ORDER BY position DESC LIMIT %s")
        params.append(query.limit)
        return [_decode(r) for r in self._select(statement, params)]

    def counts(self, school: str) -> dict[str, int]:
        """Number of rows per status (from the counters)."""
        return counts_from(self.counts_by_kind(school))

    def counts_by_kind(self, school: str) -> dict[tuple[str, str], int]:
        """Number of rows per (status, kind) (from the counters)."""
        found = self._select(
            sql.SQL("SELECT status, kind, n FROM {} WHERE school=%s AND n > 0").format(
                self._counts
            ),
            (school,),
        )
        return {(r["status"], r["kind"]): r["n"] for r in found}

    def reason_counts(self, school: str) -> dict[str, int]:
        """Number of Action Required rows per reason code (from the counters)."""
        found = self._select(
            sql.SQL(
                "SELECT reason_code, n FROM {} WHERE school=%s AND part=%s AND n > 0 ORDER BY 1"
            ).format(self._reasons),
            (school, GROUP_ROWS),
        )
        return {r["reason_code"]: r["n"] for r in found}

    def reason_groups(self, school: str) -> builtins.list[ReasonGroup]:
        """Action Required rows grouped by reason code (counters; one seek per example)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                sql.SQL("SELECT reason_code, part, n FROM {} WHERE school=%s AND n > 0").format(
                    self._reasons
                ),
                (school,),
            )
            reasons = [(r["reason_code"], r["part"], r["n"]) for r in curs.fetchall()]

            def example(code: str) -> str:
                match = sql.SQL("reason_code IS NULL" if code == "" else "reason_code = %s")
                curs.execute(
                    sql.SQL(
                        "SELECT reference FROM {} WHERE school = %s AND {} "
                        "AND status = 'action_required' ORDER BY position LIMIT 1"
                    ).format(self._rows, match),
                    (school,) if code == "" else (school, code),
                )
                found = curs.fetchone()
                return str(found["reference"]) if found else ""

            return reason_groups_from(reasons, example)

    def student_names(self, school: str, student_ids: Iterable[str]) -> dict[str, str]:
        """Display names of these students, as the log last gave them (unknown ids left out)."""
        wanted = sorted(set(student_ids))
        if not wanted:
            return {}
        found = self._select(
            sql.SQL(
                "SELECT student_id, name FROM {} WHERE school=%s AND student_id = ANY(%s)"
            ).format(self._students),
            (school, wanted),
        )
        return {r["student_id"]: r["name"] for r in found}

    def usage(self, school: str) -> builtins.list[KeyUsage]:
        """Mapping keys in use by the school's events, with counts and examples (by key)."""
        found = self._select(
            sql.SQL(
                "SELECT key, unsent, total, examples FROM {} WHERE school=%s AND total > 0 "
                "ORDER BY key"
            ).format(self._usage),
            (school,),
        )
        return [
            KeyUsage(
                key=r["key"], unsent=r["unsent"], total=r["total"], examples=tuple(r["examples"])
            )
            for r in found
        ]

    def schools(self) -> builtins.list[str]:
        """Schools that have any row."""
        found = self._select(
            sql.SQL("SELECT DISTINCT school FROM {} WHERE n > 0 ORDER BY 1").format(self._counts)
        )
        return [r["school"] for r in found]

    def schools_with_work(self) -> builtins.list[str]:
        """Schools that have a row in one of UNSETTLED_STATUSES (from the counters)."""
        found = self._select(
            sql.SQL(
                "SELECT DISTINCT school FROM {} WHERE status IN ({}) AND n > 0 ORDER BY 1"
            ).format(self._counts, _UNSETTLED)
        )
        return [r["school"] for r in found]
