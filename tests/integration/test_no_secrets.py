"""No access token, refresh token or client secret in clear text: database, logs, CLI, files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from adapters.persistence import parse_database_url
from domain.ports import FixedClock
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.helpers_qbo import SCHOOL, draft, make_rig, sim_env
from workers import cli as cli_module


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator whose client secret is distinctive."""
    config = SimulatorConfig(minute_seconds=0.6, client_secret="s3cret-client-Zq9")
    with QboSimulator(config) as simulator:
        yield simulator


def _all_database_text(db_url: str) -> str:
    """Every column of every row of every table, as text."""
    db = parse_database_url(db_url)
    chunks: list[str] = []
    if db.is_postgres:
        import psycopg
        from psycopg import sql

        with psycopg.connect(db.psycopg_conninfo()) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (db.schema,),
            ).fetchall()
            for (table,) in tables:
                rows = conn.execute(
                    sql.SQL("SELECT * FROM {}.{}").format(
                        sql.Identifier(db.schema), sql.Identifier(table)
                    )
                ).fetchall()
                chunks.extend(_row_text(r) for r in rows)
    else:
        import sqlite3

        lite = sqlite3.connect(db.path)
        for (table,) in lite.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            chunks.extend(_row_text(r) for r in lite.execute(f'SELECT * FROM "{table}"'))
        lite.close()
    return "\n".join(chunks)


def _row_text(row: tuple[Any, ...]) -> str:
    parts = []
    for value in row:
        if isinstance(value, bytes | memoryview):
            parts.append(bytes(value).decode("latin-1"))
        else:
            parts.append(str(value))
    return " ".join(parts)


def test_no_secret_anywhere(
    db_url: str,
    sim: QboSimulator,
    clock: FixedClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After connect, pushes, refresh, invalid_grant and CLI calls, no secret is in clear text."""
    env = {**sim_env(sim), "FLIGHTLEDGER_QBO_CLIENT_SECRET": "s3cret-client-Zq9"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FLIGHTLEDGER_DB", db_url)
    monkeypatch.setenv("FLIGHTLEDGER_SCHOOL", SCHOOL)
    seen_tokens: list[str] = []
    runner = CliRunner()
    cli_module._register_commands()
    with structlog.testing.capture_logs() as logs:
        rig = make_rig(db_url, sim, clock, extra_env=env)
        try:
            first = rig.vault.get_tokens(SCHOOL)
            assert first is not None
            seen_tokens += [first.access_token, first.refresh_token]
            gateway = rig.gateway()
            gateway.push_invoice(draft(1))
            sim.set_faults(expire_access_tokens_now=True)
            gateway.push_invoices([draft(2), draft(3)])
            second = rig.vault.get_tokens(SCHOOL)
            assert second is not None and second.refresh_token != first.refresh_token
            seen_tokens += [second.access_token, second.refresh_token]
            outputs = []
            for args in (
                ["--json", "connection", "status"],
                ["--json", "connection", "test"],
                ["connection", "test"],
                ["connection", "status"],
            ):
                result = runner.invoke(cli_module.app, args)
                outputs.append(result.output + (result.stderr if result.stderr_bytes else ""))
            sim.set_faults(revoke_refresh_tokens=True, expire_access_tokens_now=True)
            gateway.push_invoice(draft(4))
            result = runner.invoke(cli_module.app, ["connection", "test"])
            outputs.append(result.output)
            assert "Reconnect" in runner.invoke(cli_module.app, ["connection", "status"]).output
        finally:
            rig.ledger.close()
    secrets = [*seen_tokens, "s3cret-client-Zq9"]
    database = _all_database_text(db_url)
    log_text = repr(logs)
    cli_text = "\n".join(outputs)
    files = "\n".join(p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file())
    assert "flightledger_vault" in database or rig.vault.all_rows()  # the vault holds rows
    assert len(logs) > 0 and "Connected to Sunrise Flight School (US)" in cli_text
    for secret in secrets:
        assert secret not in database, "secret in the database"
        assert secret not in log_text, "secret in a log record"
        assert secret not in cli_text, "secret in CLI output"
        assert secret not in files, "secret in a file"
