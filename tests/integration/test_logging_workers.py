"""The projector's and the realm locks' log lines, as data, on real databases (issue 10)."""

from __future__ import annotations

import json

import psycopg

from adapters.persistence import parse_database_url
from adapters.realm_locks import PostgresRealmLocks
from adapters.views import open_view
from domain.application import FlightLedger
from domain.records import RecordKind, parse_line
from tests.factories import flight
from tests.logging_support import captured_logs
from workers.projector import Projector


def test_a_view_rebuild_logs_view_rebuilt_with_the_event_count(
    ledger: FlightLedger, db_url: str
) -> None:
    """`view rebuild`: one view_rebuilt line counting the log events it applied."""
    records = [parse_line(RecordKind.FLIGHT_ENDED, json.dumps(flight(f"F-{n}"))) for n in range(3)]
    ledger.record_batch("alpha", records)
    view = open_view(db_url)
    try:
        with captured_logs() as logs:
            applied = Projector(ledger, view).rebuild()
    finally:
        view.close()
    assert applied == 3
    assert [e for e in logs if e["event"] == "view_rebuilt"] == [
        {"event": "view_rebuilt", "events": 3, "log_level": "info"}
    ]


def test_a_lock_connection_killed_under_the_worker_logs_realm_lock_failed(pg_url: str) -> None:
    """The lock connection terminated by the server: the next try_acquire is refused (False)
    with a realm_lock_failed warning naming the school; the one after reconnects and owns it."""
    db = parse_database_url(pg_url)
    locks = PostgresRealmLocks(db)
    try:
        assert locks.try_acquire("alpha")
        conn = locks._connection()
        with psycopg.connect(db.psycopg_conninfo(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with captured_logs() as logs:
            refused = locks.try_acquire("beta")
        assert refused is False
        (failed,) = (e for e in logs if e["event"] == "realm_lock_failed")
        assert (failed["school"], failed["log_level"]) == ("beta", "warning")
        assert failed["error"]  # the driver's reason
        assert locks.try_acquire("beta")
    finally:
        locks.close()
