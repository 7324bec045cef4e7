"""The worker's assembly: its stores' pools are widened through a typed port, not probed."""

from __future__ import annotations

from pathlib import Path

from adapters.persistence import PooledConnections
from domain.ports import Closeable
from workers.bootstrap import Config, open_ledger
from workers.runtime import PASS_CONNECTIONS, build_worker


def test_postgres_stores_widen_their_pools_for_the_pass_threads(pg_url: str) -> None:
    """On PostgreSQL the log's and the view's pools hold the pass threads' connections."""
    config = Config(db_url=pg_url, env={"FLIGHTLEDGER_DB": pg_url})
    ledger = open_ledger(pg_url)
    runtime = build_worker(ledger, config)
    try:
        wanted = min(runtime.loop.passes_at_once, PASS_CONNECTIONS) + 2
        assert runtime.loop.passes_at_once > 1
        for store in (ledger.recorder, runtime.engine.view):
            assert isinstance(store, PooledConnections)
            datastore = getattr(store, "datastore")  # noqa: B009 - the library's, not a port
            assert datastore.pool.max_size >= wanted
    finally:
        runtime.close()
        ledger.close()


def test_sqlite_stores_have_no_pool_to_widen(tmp_path: Path) -> None:
    """SQLite runs one pass at a time: neither store claims a pool."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    config = Config(db_url=url, env={"FLIGHTLEDGER_DB": url})
    ledger = open_ledger(url)
    runtime = build_worker(ledger, config)
    try:
        assert runtime.loop.passes_at_once == 1
        assert not isinstance(ledger.recorder, PooledConnections)
        assert not isinstance(runtime.engine.view, PooledConnections)
    finally:
        runtime.close()
        ledger.close()


def test_a_quickbooks_gateway_is_closeable_and_a_bare_fake_is_not() -> None:
    """The runtime closes a replaced QuickBooks gateway (its HTTP session) and nothing else."""
    from adapters.quickbooks.gateway import QuickBooksGateway

    class BareFake:
        def push_invoice(self) -> None:
            """A gateway method, but no close()."""

    assert issubclass(QuickBooksGateway, Closeable)
    assert not isinstance(BareFake(), Closeable)


def test_the_projector_listens_on_the_channel_the_log_notifies(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL: the library's channel (named after the events table); SQLite: a fixed name."""
    from eventsourcing.postgres import PostgresApplicationRecorder

    from adapters.persistence import SQLITE_CHANNEL, log_channel
    from workers.projector import Projector

    postgres = open_ledger(pg_url)
    sqlite = open_ledger(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        recorder = postgres.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        assert log_channel(recorder) == recorder.channel_name
        assert log_channel(sqlite.recorder) == SQLITE_CHANNEL
        runtime = build_worker(postgres, Config(db_url=pg_url, env={}))
        try:
            assert runtime.projector.channel == recorder.channel_name
        finally:
            runtime.close()
        assert Projector(sqlite, object()).channel == SQLITE_CHANNEL  # type: ignore[arg-type]
    finally:
        postgres.close()
        sqlite.close()
