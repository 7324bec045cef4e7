"""The suite's rule for missing services: skip with a reason locally, fail under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PG_TEST = "tests/integration/test_worker_listen.py"  # needs PostgreSQL (the pg_url fixture)
NOWHERE = "postgresql://postgres@127.0.0.1:9/test"  # nothing listens on the discard port


def _run(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["FLIGHTLEDGER_TEST_DB"] = NOWHERE
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", PG_TEST],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def test_missing_postgres_skips_with_a_reason_outside_ci() -> None:
    """Without CI=true, an unreachable PostgreSQL skips its tests and says why."""
    done = _run(ci=False)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout and "is unreachable" in done.stdout


def test_missing_postgres_fails_under_ci() -> None:
    """Under CI=true, an unreachable PostgreSQL is a failure, never a skip."""
    done = _run(ci=True)
    assert done.returncode != 0
    assert "CI=true requires PostgreSQL" in done.stdout and "skipped" not in done.stdout
