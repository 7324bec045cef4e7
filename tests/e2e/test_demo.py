"""The demo (what `make demo` runs) as a new user would run it: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "workers.cli"]


def test_demo_syncs_one_invoice_per_flight(tmp_path: Path) -> None:
    """The demo ends with every flight invoiced exactly once and every payment linked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTLEDGER_")}
    done = subprocess.run(
        [*CLI, "demo", "--workdir", str(tmp_path / "demo"), "--flights", "40", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True
    assert result["invoices_in_qbo"] == result["flights"] == 40
    assert result["payments_in_qbo"] == result["payments"] == 3
    assert result["synced"] == 43
    # two students have no mapping: one is matched to an existing customer, one is created
    assert (result["customers_matched"], result["customers_created"]) == (1, 1)
    narration = done.stderr
    assert "Connected to Sunrise Flight School (US)" in narration
    assert "missing_mapping" in narration and "fuel_surcharge" in narration
    assert "Traceback" not in narration
    key_file = tmp_path / "demo" / ".flightledger" / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_demo_history_readable_afterwards(tmp_path: Path) -> None:
    """After the demo, the audit trail it points to is readable and verifies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTLEDGER_")}
    workdir = tmp_path / "demo"
    subprocess.run(
        [*CLI, "demo", "--workdir", str(workdir), "--flights", "6", "--json"],
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    env["FLIGHTLEDGER_DB"] = f"sqlite:///{workdir / 'flightledger.db'}"
    history = subprocess.run(
        [*CLI, "--json", "history", "F-2006"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    types = [entry["type"] for entry in json.loads(history.stdout)]
    assert types[0] == "FlightEnded" and "ActionRequired" in types and types[-1] == "Synced"
    verify = subprocess.run(
        [*CLI, "--json", "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True
