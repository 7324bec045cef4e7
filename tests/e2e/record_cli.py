"""Driving `flightledger record` in this process (typer's CliRunner) for the property tests.

In process rather than as a subprocess so that hypothesis can try many records quickly; each test
gets one SQLite file (the `db` fixture, seeded with one flight) shared by its examples.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

import workers.cli
from tests.factories import flight
from workers.bootstrap import open_ledger

workers.cli._register_commands()
RUNNER = CliRunner()
SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def invoke(db: str, *args: str, stdin: str | bytes | None = None) -> tuple[int, dict[str, Any]]:
    """Run `flightledger record ARGS --db DB --json` in-process; exit code and the JSON document."""
    argv = workers.cli.hoist_global_options(["record", *args, "--db", db, "--json"])
    result = RUNNER.invoke(workers.cli.app, argv, input=stdin)
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def log_size(db: str) -> int:
    """Events in the log."""
    ledger = open_ledger(db)
    try:
        return len(ledger.recorder.select_notifications(start=1, limit=100_000))
    finally:
        ledger.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    """A SQLite log with one flight already recorded."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    code, _ = invoke(url, "flight-ended", "-", stdin=json.dumps(flight("F-SEED")) + "\n")
    assert code == 0
    yield url
