"""A running worker whose token vault cannot be read keeps the flights waiting, never calls the
school disconnected, and syncs them once the vault is back (PostgreSQL; the worker is started
before the outage and never restarted)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from adapters.persistence import parse_database_url
from adapters.vault import TABLE
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import flight
from tests.helpers_qbo import (
    CHARGE_ITEMS,
    Cli,
    assert_one_invoice_each,
    cli_env,
    connect_via_cli,
    map_via_cli,
    record_via_cli,
    spawn_worker,
)

SCHOOL = "sunrise"


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """The bundled simulator."""
    with QboSimulator(SimulatorConfig()) as simulator:
        yield simulator


def _sql(pg_url: str, statement: str) -> None:
    db = parse_database_url(pg_url)
    with psycopg.connect(db.psycopg_conninfo(), autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{db.schema}"')
        conn.execute(statement)


def _wait_for(condition: object, seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)  # waiting on a condition, not timing anything
    raise AssertionError(f"{what} within {seconds} s; worker log: {log.read_text()[-2000:]}")


def test_a_vault_outage_under_a_running_worker_is_retried_not_not_connected(
    pg_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    cli = Cli(cli_env(sim, pg_url, SCHOOL))
    connect_via_cli(cli)
    map_via_cli(cli, CHARGE_ITEMS, {"S-7": "1"})
    log = tmp_path / "worker.log"
    worker = spawn_worker(cli.env, log_path=log)
    try:
        record_via_cli(cli, tmp_path / "warm.jsonl", [flight("F-000")])
        _wait_for(lambda: len(sim.invoices()) == 1, 60, "the first flight synced", log)

        _sql(pg_url, f"ALTER TABLE {TABLE} RENAME TO {TABLE}_away")  # the vault is unreadable
        record_via_cli(cli, tmp_path / "f.jsonl", [flight(f"F-{n:03d}") for n in (1, 2, 3)])
        met = ("sync_pass_crashed", "qbo_gateway_failed")  # retried, or (before) given up on
        _wait_for(lambda: any(m in log.read_text() for m in met), 60, "a pass met it", log)
        rows = {r["reference"]: r for r in cli.ok("events")}
        assert {rows[f"F-{n:03d}"]["status"] for n in (1, 2, 3)} <= {"pending", "syncing"}
        assert not any(r["status"] == "action_required" for r in rows.values()), rows
        assert len(sim.invoices()) == 1

        _sql(pg_url, f"ALTER TABLE {TABLE}_away RENAME TO {TABLE}")  # the vault is back
        _wait_for(lambda: len(sim.invoices()) == 4, 90, "the waiting flights synced", log)
        assert worker.poll() is None, "the worker stopped during the outage"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert_one_invoice_each(sim.invoices(), {f"FL-F-{n:03d}" for n in range(4)})
