"""The audit hash chain over the stored log, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from adapters.persistence import parse_database_url
from adapters.views import open_view
from domain.application import FlightLedger
from domain.records import RecordKind, parse_line
from projections.view import ProjectedView
from tests.factories import flight
from workers.projector import Projector, verify_audit_chain


@pytest.fixture
def view(db_url: str, ledger: FlightLedger) -> Iterator[ProjectedView]:
    """The view (which keeps the chain) next to the log."""
    opened = open_view(db_url)
    yield opened
    opened.close()


def _record(ledger: FlightLedger, *flight_ids: str) -> None:
    records = [parse_line(RecordKind.FLIGHT_ENDED, json.dumps(flight(f))) for f in flight_ids]
    ledger.record_batch("default", records)


def _tamper(db_url: str, position: int) -> None:
    """Rewrite one stored event's amount (270.00 -> 27.00) directly in its stored bytes."""
    db = parse_database_url(db_url)
    if db.is_postgres:
        table = sql.SQL("{}.flightledger_events").format(sql.Identifier(db.schema))
        with psycopg.connect(db.psycopg_conninfo(), autocommit=True) as conn:
            row = conn.execute(
                sql.SQL("SELECT state FROM {} WHERE notification_id = %s").format(table),
                (position,),
            ).fetchone()
            assert row is not None
            forged = bytes(row[0]).replace(b"270.00", b"27.00")
            conn.execute(
                sql.SQL("UPDATE {} SET state = %s WHERE notification_id = %s").format(table),
                (forged, position),
            )
        return
    with sqlite3.connect(db.path) as conn:
        (state,) = conn.execute(
            "SELECT state FROM stored_events WHERE rowid = ?", (position,)
        ).fetchone()
        forged = bytes(state).replace(b"270.00", b"27.00")
        assert forged != state
        conn.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (forged, position))


def test_verify_passes_on_an_untouched_log(ledger: FlightLedger, view: ProjectedView) -> None:
    """The chain kept by the projector verifies, and verify chains what is not chained yet."""
    _record(ledger, "F-1", "F-2", "F-3")
    Projector(ledger, view).catch_up()
    _record(ledger, "F-4")
    verdict = verify_audit_chain(ledger, view)
    assert (verdict.ok, verdict.events, verdict.head_position) == (True, 4, 4)
    assert verdict.head == view.audit_links(4, 1)[0][1].hex()
    again = verify_audit_chain(ledger, view)
    assert (again.ok, again.events, again.head) == (True, 4, verdict.head)


def test_verify_names_the_position_whose_bytes_were_edited(
    db_url: str, ledger: FlightLedger, view: ProjectedView
) -> None:
    """After someone edits one stored event's bytes in the database, verify fails naming it."""
    _record(ledger, "F-1", "F-2", "F-3", "F-4", "F-5")
    Projector(ledger, view).catch_up()
    assert verify_audit_chain(ledger, view).ok
    _tamper(db_url, 3)
    verdict = verify_audit_chain(ledger, view)
    assert not verdict.ok
    assert verdict.first_bad_position == 3
    assert verdict.events == 2
    assert "position 3" in verdict.message


def test_rebuild_does_not_launder_an_edit(
    db_url: str, ledger: FlightLedger, view: ProjectedView
) -> None:
    """Rebuilding the view after an edit keeps the original chain, so verify still fails."""
    _record(ledger, "F-1", "F-2")
    Projector(ledger, view).catch_up()
    _tamper(db_url, 2)
    Projector(ledger, view).rebuild()
    forged = view.list("default")[1]
    assert str(forged.amount) == "27.00"
    assert verify_audit_chain(ledger, view).first_bad_position == 2
