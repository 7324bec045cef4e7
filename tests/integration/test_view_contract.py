"""One contract for the financial-event view, run against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.tests.persistence import TrackingRecorderTestCase
from psycopg import sql

from adapters import postgres_view, sqlite_view
from adapters.persistence import parse_database_url
from adapters.postgres_view import PostgresFinancialEventView
from adapters.sqlite_view import SQLiteFinancialEventView
from adapters.views import open_view
from domain.application import FlightLedger
from domain.financial_event import FailureCategory
from domain.ports import FixedClock, ReasonCode
from domain.records import RecordKind, parse_correction_line, parse_line
from projections.financial_events import (
    InMemoryFinancialEventView,
    count_kinds,
    count_statuses,
    decode_events,
    group_reasons,
)
from projections.view import VIEW_VERSION, FinancialEventView, ProjectedView, TrackingConflict
from tests.conftest import drop_schema, new_schema_url, require_postgres
from tests.factories import amendment, cancellation, flight, payment
from tests.fakes import FakeFinancialEventView
from workers.bootstrap import open_ledger
from workers.projector import Projector, decode_changes


def _record(ledger: FlightLedger, *flight_ids: str, school: str = "default") -> None:
    records = [parse_line(RecordKind.FLIGHT_ENDED, json.dumps(flight(f))) for f in flight_ids]
    ledger.record_batch(school, records)


def _batch(ledger: FlightLedger, view: ProjectedView) -> int:
    previous = view.max_tracking_id()
    notifications = ledger.recorder.select_notifications(start=previous + 1, limit=1000)
    view.apply_batch(
        decode_changes(ledger, notifications),
        notifications,
        previous=previous,
        position=notifications[-1].id,
    )
    return len(notifications)


def _assert_counters_match_the_rows(
    ledger: FlightLedger, view: FinancialEventView, schools: tuple[str, ...] = ("default", "other")
) -> None:
    """Every counter the view reads equals a recount of its rows (and of the log's events)."""
    reference = InMemoryFinancialEventView()
    named: dict[tuple[str, str], str] = {}  # the last name the log gave each student
    for position, event in decode_events(
        ledger.mapper, ledger.recorder.select_notifications(1, 10_000)
    ):
        reference.apply(position, event)
        if getattr(event, "student_name", ""):
            row = reference.get(event.originator_id)
            assert row is not None
            named[(row.school, event.student_id)] = event.student_name
    for school in schools:
        rows = view.list(school)
        assert view.counts(school) == count_statuses(rows, school)
        assert view.counts_by_kind(school) == count_kinds(rows, school)
        assert view.reason_groups(school) == group_reasons(rows, school)
        assert view.reason_counts(school) == {
            g.reason_code: g.count for g in group_reasons(rows, school)
        }
        assert view.counts(school) == reference.counts(school)
        assert view.reason_groups(school) == reference.reason_groups(school)
        students = {r.student_id for r in rows} | {"S-nobody"}
        names = {i: n for (school_of, i), n in named.items() if school_of == school}
        assert view.student_names(school, students) == names
        assert reference.student_names(school, students) == names
    assert view.schools() == sorted({s for s in schools if view.list(s)})


class FinancialEventViewContract(ABC):
    """What every FinancialEventView reads back after the log's events reached it.

    Run against the stored views (SQLite, PostgreSQL), the in-memory view of projections/ and
    the test fake (tests/fakes.py), so a test double cannot disagree with what it stands for.
    """

    @pytest.fixture
    def ledger(self, url: str, clock: FixedClock) -> Iterator[FlightLedger]:
        """The log on this backend."""
        app = open_ledger(url, clock=clock)
        yield app
        app.close()

    @abstractmethod
    def catch_up(self, ledger: FlightLedger, view: Any) -> None:
        """Bring the view up to the log's head (a projector batch; nothing for the fake)."""

    def test_empty_view_is_at_position_zero(self, view: FinancialEventView) -> None:
        """A new view has no rows, no schools and position 0."""
        assert view.max_tracking_id() == 0
        assert view.schools() == []
        assert view.counts("default") == {}

    def test_rows_and_position_of_the_events(
        self, ledger: FlightLedger, view: FinancialEventView
    ) -> None:
        """The events' rows are read back; the position is the last event's."""
        _record(ledger, "F-1", "F-2")
        _record(ledger, "F-3", school="other")
        self.catch_up(ledger, view)
        assert view.max_tracking_id() == 3
        assert view.counts("default") == {"pending": 2}
        assert [r.reference for r in view.list("default")] == ["F-1", "F-2"]
        assert view.schools() == ["default", "other"]
        row = view.list("other")[0]
        assert view.get(row.id) == row

    def test_rows_follow_later_events_across_batches(
        self, ledger: FlightLedger, view: FinancialEventView, clock: FixedClock
    ) -> None:
        """Events in a later batch update rows created in an earlier one; filters see them."""
        _record(ledger, "F-1", "F-2", "F-3")
        self.catch_up(ledger, view)
        first, second, third = (ledger.find("default", f) for f in ("F-1", "F-2", "F-3"))
        first.start_push(request_id="r1", doc_number="FL-1", batched=False, actor="w", at=clock.at)
        first.mark_synced(qbo_id="130", doc_number="FL-1", actor="w", at=clock.at)
        second.require_action(
            reason_code=ReasonCode.MISSING_MAPPING,
            message="Map charge code fuel_surcharge",
            missing=["charge:fuel_surcharge"],
            actor="w",
            at=clock.at,
        )
        third.require_action(
            reason_code=ReasonCode.MISSING_MAPPING,
            message="Map student S-7",
            missing=["student:S-7"],
            actor="w",
            at=clock.at,
        )
        ledger.save(first, second, third)
        self.catch_up(ledger, view)
        synced = view.get(first.id)
        assert synced is not None
        assert (synced.status, synced.qbo_id, synced.attempts) == ("synced", "130", 1)
        assert view.counts("default") == {"synced": 1, "action_required": 2}
        assert [r.reference for r in view.list("default", reason_code="missing_mapping")] == [
            "F-2",
            "F-3",
        ]
        assert [r.reference for r in view.list("default", statuses=["synced", "pending"])] == [
            "F-1"
        ]
        (group,) = view.reason_groups("default")
        assert (group.reason_code, group.count, group.example) == ("missing_mapping", 2, "F-2")
        assert group.missing == ("charge:fuel_surcharge", "student:S-7")
        assert view.reason_counts("default") == {"missing_mapping": 2}
        assert view.list("default", limit=1)[0].reference == "F-1"

    def test_usage_counters_follow_the_events(
        self, ledger: FlightLedger, view: FinancialEventView, clock: FixedClock
    ) -> None:
        """Keys in use are counted per school as rows change (unsent, total, examples)."""
        _record(ledger, "F-1", "F-2", "F-3")
        _record(ledger, "F-9", school="other")
        ledger.record("default", parse_line(RecordKind.PAYMENT_RECEIVED, json.dumps(payment())))
        self.catch_up(ledger, view)
        usage = {u.key: u for u in view.usage("default")}
        assert sorted(usage) == [
            "charge:aircraft_rental", "charge:instructor_dual", "payment_type:card", "student:S-7",
        ]  # fmt: skip
        student = usage["student:S-7"]
        assert (student.unsent, student.total) == (4, 4)
        assert student.examples == ("F-1", "F-2", "F-3", "P-1")
        first, second = (ledger.find("default", f) for f in ("F-1", "F-2"))
        first.start_push(request_id="r1", doc_number="FL-1", batched=False, actor="w", at=clock.at)
        ledger.save(first)
        self.catch_up(ledger, view)  # syncing is still unsent
        assert {u.key: u.unsent for u in view.usage("default")}["charge:aircraft_rental"] == 3
        first.mark_synced(qbo_id="130", doc_number="FL-1", actor="w", at=clock.at)
        second.dismiss(operator="ana", note="entered twice", at=clock.at)
        ledger.save(first, second)
        self.catch_up(ledger, view)
        rental = {u.key: u for u in view.usage("default")}["charge:aircraft_rental"]
        assert (rental.unsent, rental.total, rental.examples) == (1, 3, ("F-3",))
        assert [(u.key, u.unsent) for u in view.usage("other")][-1] == ("student:S-7", 1)
        reference = InMemoryFinancialEventView()
        for change in decode_events(ledger.mapper, ledger.recorder.select_notifications(1, 100)):
            reference.apply(*change)
        for school in ("default", "other"):
            assert view.usage(school) == reference.usage(school)

    def test_schools_with_work_are_those_with_rows_to_settle(
        self, ledger: FlightLedger, view: FinancialEventView, clock: FixedClock
    ) -> None:
        """pending/retrying/uncertain/syncing count as work; synced and action_required don't."""
        _record(ledger, "F-1")
        _record(ledger, "F-2", school="other")
        _record(ledger, "F-3", school="third")
        self.catch_up(ledger, view)
        assert view.schools_with_work() == ["default", "other", "third"]
        first, second, third = (
            ledger.find(s, f) for s, f in (("default", "F-1"), ("other", "F-2"), ("third", "F-3"))
        )
        for event in (first, second, third):
            event.start_push(request_id="r", doc_number="FL", batched=False, actor="w", at=clock.at)
        first.mark_synced(qbo_id="130", doc_number="FL", actor="w", at=clock.at)
        second.require_action(
            reason_code=ReasonCode.VALIDATION, message="no", missing=[], actor="w", at=clock.at
        )
        ledger.save(first, second, third)
        self.catch_up(ledger, view)
        assert view.schools_with_work() == ["third"]  # syncing
        third.mark_synced(qbo_id="131", doc_number="FL", actor="w", at=clock.at)
        ledger.save(third)
        self.catch_up(ledger, view)
        assert view.schools_with_work() == []
        assert view.schools() == ["default", "other", "third"]

    def test_counters_follow_every_transition(
        self, ledger: FlightLedger, view: FinancialEventView, clock: FixedClock
    ) -> None:
        """Row counters (status x kind, reason x missing key) and student names move with the
        rows through push, sync, failure, action required, dismiss, retry, amendment and
        cancellation, batch after batch."""
        self.walk_every_transition(ledger, view, clock)

    def walk_every_transition(
        self, ledger: FlightLedger, view: FinancialEventView, clock: FixedClock
    ) -> None:
        """The transitions of test_counters_follow_every_transition, checked batch by batch."""
        _record(ledger, "F-1", "F-2", "F-3", "F-4", "F-5")
        _record(ledger, "F-9", school="other")
        ledger.record("default", parse_line(RecordKind.PAYMENT_RECEIVED, json.dumps(payment())))
        self.catch_up(ledger, view)
        _assert_counters_match_the_rows(ledger, view)
        assert view.counts_by_kind("default") == {
            ("pending", "flight-ended"): 5, ("pending", "payment-received"): 1,
        }  # fmt: skip
        assert view.student_names("default", ["S-7"]) == {"S-7": "Student S-7"}
        f1, f2, f3, f4, f5 = (ledger.find("default", f"F-{n}") for n in range(1, 6))
        f1.start_push(request_id="r1", doc_number="FL-1", batched=False, actor="w", at=clock.at)
        f1.mark_synced(qbo_id="130", doc_number="FL-1", actor="w", at=clock.at)
        for event, code, missing in (
            (f2, ReasonCode.MISSING_MAPPING, ["charge:fuel", "student:S-7"]),
            (f3, ReasonCode.MISSING_MAPPING, ["charge:fuel"]),
            (f4, ReasonCode.VALIDATION, []),
        ):
            event.require_action(
                reason_code=code, message="fix it", missing=missing, actor="w", at=clock.at
            )
        f5.start_push(request_id="r5", doc_number="FL-5", batched=False, actor="w", at=clock.at)
        f5.mark_failed(
            category=FailureCategory.EXHAUSTED, code="500", message="ISE", actor="w", at=clock.at
        )
        ledger.save(f1, f2, f3, f4, f5)
        self.catch_up(ledger, view)
        _assert_counters_match_the_rows(ledger, view)
        groups = {g.reason_code: g for g in view.reason_groups("default")}
        assert (groups["missing_mapping"].count, groups["missing_mapping"].example) == (2, "F-2")
        assert groups["missing_mapping"].missing == ("charge:fuel", "student:S-7")
        # the example leaves (dismissed), a missing key goes with it; a retry empties a group
        f2.dismiss(operator="ana", note="entered twice", at=clock.at)
        assert f4.request_retry(operator="ana", scope="validation", at=clock.at)
        ledger.save(f2, f4)
        self.catch_up(ledger, view)
        _assert_counters_match_the_rows(ledger, view)
        (group,) = view.reason_groups("default")
        assert (group.count, group.example, group.missing) == (1, "F-3", ("charge:fuel",))
        # a correction of the synced flight (new student name) and a cancellation
        changed = amendment("F-1", hours="2.0")
        changed["student"]["name"] = "Renamed S-7"
        line = json.dumps(changed)
        ledger.record_correction("default", parse_correction_line(RecordKind.FLIGHT_AMENDED, line))
        gone = json.dumps(cancellation("F-3"))
        ledger.record_correction(
            "default", parse_correction_line(RecordKind.FLIGHT_CANCELLED, gone)
        )
        self.catch_up(ledger, view)
        _assert_counters_match_the_rows(ledger, view)
        assert view.student_names("default", ["S-7"]) == {"S-7": "Renamed S-7"}
        assert view.reason_groups("default") == []

    def test_failed_push_keeps_qbo_message(
        self, ledger: FlightLedger, view: FinancialEventView, clock: FixedClock
    ) -> None:
        """An exhausted failure shows as failed with QBO's own message."""
        _record(ledger, "F-1")
        event = ledger.find("default", "F-1")
        event.start_push(request_id="r", doc_number="FL-1", batched=False, actor="w", at=clock.at)
        event.mark_failed(
            category=FailureCategory.EXHAUSTED,
            code="500",
            message="Internal Server Error",
            actor="w",
            at=clock.at,
        )
        ledger.save(event)
        self.catch_up(ledger, view)
        row = view.get(event.id)
        assert row is not None
        assert (row.status, row.reason) == ("failed", "Internal Server Error")


class ProjectedViewContract(FinancialEventViewContract):
    """What a stored view adds: batches under tracking, drop, rebuild, layout, audit links."""

    @abstractmethod
    def create_view(self, url: str) -> ProjectedView:
        """A view on the database at url."""

    @pytest.fixture
    def view(self, url: str, ledger: FlightLedger) -> Iterator[ProjectedView]:
        """The view next to the log."""
        created = self.create_view(url)
        yield created
        created.close()

    def catch_up(self, ledger: FlightLedger, view: Any) -> None:
        """One projector batch."""
        _batch(ledger, view)

    def test_batch_writes_rows_and_position_together(
        self, ledger: FlightLedger, view: ProjectedView
    ) -> None:
        """Applying a batch stores its rows and moves tracking to the batch's last position."""
        _record(ledger, "F-1", "F-2")
        _record(ledger, "F-3", school="other")
        assert _batch(ledger, view) == 3
        assert (view.max_tracking_id(), view.counts("default")) == (3, {"pending": 2})

    def test_rebuild_and_drop_keep_the_counters_right(
        self, ledger: FlightLedger, view: ProjectedView, clock: FixedClock
    ) -> None:
        """After every transition a rebuild fills the counters the same; drop empties them."""
        self.walk_every_transition(ledger, view, clock)
        before = {s: (view.counts_by_kind(s), view.reason_groups(s)) for s in ("default", "other")}
        Projector(ledger, view).rebuild()
        _assert_counters_match_the_rows(ledger, view)
        assert {s: (view.counts_by_kind(s), view.reason_groups(s)) for s in before} == before
        assert view.student_names("default", ["S-7"]) == {"S-7": "Renamed S-7"}
        view.drop()
        assert (view.counts("default"), view.schools(), view.reason_groups("default")) == (
            {},
            [],
            [],
        )
        assert view.student_names("default", ["S-7"]) == {}

        assert view.usage("default") == []

    def test_stale_batch_is_refused_and_writes_nothing(
        self, ledger: FlightLedger, view: ProjectedView
    ) -> None:
        """A batch read before another projector moved the view raises and changes nothing."""
        _record(ledger, "F-1")
        notifications = ledger.recorder.select_notifications(start=1, limit=10)
        changes = decode_changes(ledger, notifications)
        view.apply_batch(changes, notifications, previous=0, position=1)
        with pytest.raises(TrackingConflict):
            view.apply_batch(changes, notifications, previous=0, position=1)
        assert view.max_tracking_id() == 1
        assert view.counts("default") == {"pending": 1}

    @abstractmethod
    def make_older(self, url: str) -> None:
        """Make the stored view look built by the code before VIEW_VERSION was kept."""

    def test_view_of_an_older_layout_is_projected_again(
        self, url: str, ledger: FlightLedger, view: ProjectedView
    ) -> None:
        """A view stored by older code (no layout version: no row counters) is emptied when
        opened, so the projector fills rows and counters again from the start of the log."""
        _record(ledger, "F-1", "F-2")
        _batch(ledger, view)
        view.close()
        self.make_older(url)
        reopened = self.create_view(url)
        try:
            assert reopened.max_tracking_id() == 0
            assert reopened.counts("default") == {}
            Projector(ledger, reopened).catch_up()
            assert reopened.counts("default") == {"pending": 2}
            _assert_counters_match_the_rows(ledger, reopened, ("default",))
        finally:
            reopened.close()
        again = self.create_view(url)  # a view of today's layout is kept as it is
        try:
            assert (again.max_tracking_id(), again.counts("default")) == (2, {"pending": 2})
        finally:
            again.close()

    def test_drop_clears_rows_and_position_but_keeps_the_chain(
        self, ledger: FlightLedger, view: ProjectedView
    ) -> None:
        """drop() empties the view; the audit chain links stay."""
        _record(ledger, "F-1", "F-2")
        _batch(ledger, view)
        links = view.audit_links(1, 10)
        assert [p for p, _ in links] == [1, 2]
        view.drop()
        assert view.max_tracking_id() == 0
        assert view.counts("default") == {}
        assert view.audit_links(1, 10) == links

    def test_audit_links_are_written_once(self, ledger: FlightLedger, view: ProjectedView) -> None:
        """Appending a link that exists leaves the stored one unchanged."""
        _record(ledger, "F-1")
        _batch(ledger, view)
        stored = view.audit_links(1, 10)
        view.append_audit_links([(1, b"x" * 32), (2, b"y" * 32)])
        assert view.audit_links(1, 10) == [stored[0], (2, b"y" * 32)]


class TestSQLiteView(ProjectedViewContract):
    """The contract on SQLite."""

    @pytest.fixture
    def url(self, sqlite_url: str) -> str:
        """A SQLite file."""
        return sqlite_url

    def create_view(self, url: str) -> ProjectedView:
        """SQLiteFinancialEventView."""
        view = open_view(url)
        assert isinstance(view, SQLiteFinancialEventView)
        return view

    def make_older(self, url: str) -> None:
        """Drop the layout table and the row counters, as the code before them left a view."""
        with sqlite3.connect(parse_database_url(url).path) as db:
            assert db.execute(f"SELECT value FROM {sqlite_view.META}").fetchall() == [
                (VIEW_VERSION,)
            ]
            for table in (sqlite_view.META, sqlite_view.COUNTS, sqlite_view.REASONS):
                db.execute(f"DROP TABLE {table}")


class TestPostgresView(ProjectedViewContract):
    """The contract on PostgreSQL."""

    @pytest.fixture
    def url(self, pg_url: str) -> str:
        """A PostgreSQL schema."""
        return pg_url

    def create_view(self, url: str) -> ProjectedView:
        """PostgresFinancialEventView."""
        view = open_view(url)
        assert isinstance(view, PostgresFinancialEventView)
        return view

    def make_older(self, url: str) -> None:
        """Drop the layout table and the row counters, as the code before them left a view."""
        db = parse_database_url(url)
        with psycopg.connect(db.psycopg_conninfo(), autocommit=True) as conn:
            schema = sql.Identifier(db.schema)
            for table in (postgres_view.META, postgres_view.COUNTS, postgres_view.REASONS):
                conn.execute(sql.SQL("DROP TABLE {}.{}").format(schema, sql.Identifier(table)))


class TestInMemoryView(FinancialEventViewContract):
    """The read contract on projections' in-memory view (--as-of reads, the tests' reference)."""

    @pytest.fixture
    def url(self, sqlite_url: str) -> str:
        """The log in a SQLite file."""
        return sqlite_url

    @pytest.fixture
    def view(self) -> InMemoryFinancialEventView:
        """An empty in-memory view."""
        return InMemoryFinancialEventView()

    def catch_up(self, ledger: FlightLedger, view: Any) -> None:
        """Apply every event past the view's position, as an --as-of read does."""
        notifications = ledger.recorder.select_notifications(view.max_tracking_id() + 1, 10_000)
        for position, event in decode_events(ledger.mapper, notifications):
            view.apply(position, event)
        if notifications:
            view.advance(notifications[-1].id)


class TestFakeView(FinancialEventViewContract):
    """The read contract on the tests' FakeFinancialEventView (tests/fakes.py)."""

    @pytest.fixture
    def url(self, sqlite_url: str) -> str:
        """The log in a SQLite file."""
        return sqlite_url

    @pytest.fixture
    def view(self, ledger: FlightLedger) -> FakeFinancialEventView:
        """The fake reads the log itself."""
        return FakeFinancialEventView(ledger)

    def catch_up(self, ledger: FlightLedger, view: Any) -> None:
        """Nothing: the fake reads the log on every call."""


# --- the library's own TrackingRecorder contract ---------------------------------------------


class TestSQLiteViewTracking(TrackingRecorderTestCase):
    """eventsourcing's TrackingRecorderTestCase against SQLiteFinancialEventView."""

    def setUp(self) -> None:
        """A temporary directory for the database file."""
        self.directory = tempfile.TemporaryDirectory()
        self.views: list[Any] = []

    def tearDown(self) -> None:
        """Close views and remove the file."""
        for view in self.views:
            view.close()
        self.directory.cleanup()

    def create_recorder(self) -> SQLiteFinancialEventView:
        """A view in a fresh SQLite file."""
        view = open_view(f"sqlite:///{self.directory.name}/view.db")
        assert isinstance(view, SQLiteFinancialEventView)
        self.views.append(view)
        return view


class TestPostgresViewTracking(TrackingRecorderTestCase):
    """eventsourcing's TrackingRecorderTestCase against PostgresFinancialEventView."""

    def setUp(self) -> None:
        """A schema of its own (skip without PostgreSQL, fail under CI)."""
        require_postgres()
        self.url = new_schema_url()
        self.views: list[Any] = []

    def tearDown(self) -> None:
        """Close views and drop the schema."""
        for view in self.views:
            view.close()
        drop_schema(self.url)

    def create_recorder(self) -> PostgresFinancialEventView:
        """A view in the schema."""
        view = open_view(self.url)
        assert isinstance(view, PostgresFinancialEventView)
        self.views.append(view)
        return view
