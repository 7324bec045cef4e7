"""Every command of the CLI contract as scripts run it: names, flags, exit codes, JSON.

One test per command group (connection, record, mappings and settings, worker/events/retry,
history/dismiss/view/audit), so pytest-xdist runs them side by side. Each test checks its group
through the real executable; the state a group needs first (a connected school, the records,
the mappings, worker passes) is set up by the same commands run in this process
(tests/helpers_qbo.Cli, no process start-up each), in the test's own SQLite file against its own
simulator. The simulator is not shared between tests: its invoices and DocNumbers are what the
worker group asserts, and a shared company would answer a second test's DocNumbers as duplicates.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import flight, invoice_request, jsonl, payment
from tests.helpers_qbo import Cli, connect_via_cli

EXE = str(Path(sys.executable).with_name("flightledger"))
pytestmark = pytest.mark.timeout(240)  # a hang guard: the longest group runs ~15 CLI processes

EVENT_FIELDS = {
    "id",
    "kind",
    "reference",
    "status",
    "reason_code",
    "reason",
    "attempts",
    "qbo_id",
    "doc_number",
    "amount",
    "updated_at",
}
STATUS_FIELDS = {
    "pill",
    "tone",
    "badge",
    "company",
    "country",
    "realm",
    "days_left",
    "expires_at",
    "last_error",
}


REALM = "9130350000000001"
FUEL = {"code": "fuel_surcharge", "quantity": "1", "rate": "18.50"}
MAPPINGS = (
    ("charge", "aircraft_rental", "--item", "1"),
    ("charge", "instructor_dual", "--item", "2"),
    ("charge", "ground_instruction", "--item", "4"),
    ("student", "S-7", "--customer", "7"),
    ("student", "S-8", "--customer", "8"),
    ("payment-type", "card", "--deposit-account", "36", "--payment-method", "2"),
    ("defaults", "--term", "3", "--memo", "Thanks for flying", "--income-account", "79"),
)


def flight_rows() -> list[dict[str, Any]]:
    """F-1..F-4 for S-7, F-5 for S-8 with a fuel surcharge (unmapped until the retry)."""
    rows = [flight(f"F-{i}", "S-7") for i in range(1, 5)]
    rows.append(flight("F-5", "S-8", charges=[*rows[0]["charges"], FUEL]))
    return rows


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """The bundled simulator, reached over HTTP by the subprocesses (one per test)."""
    with QboSimulator(SimulatorConfig()) as simulator:
        yield simulator


class Script:
    """Runs the console script in one environment and checks it never prints a traceback."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def __call__(self, *args: str, stdin: str | None = None) -> tuple[int, Any, str]:
        done = subprocess.run(
            [EXE, "--json", *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
            check=False,
            env=self.env,
            cwd=self.cwd,
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        out = done.stdout.strip()
        return done.returncode, json.loads(out) if out else None, done.stderr


@pytest.fixture
def env(sim: QboSimulator, tmp_path: Path) -> dict[str, str]:
    """A fresh SQLite file, the simulator, a vault key of its own and an operator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTLEDGER_")}
    env.update(
        {
            "FLIGHTLEDGER_DB": f"sqlite:///{tmp_path / 'fl.db'}",
            "FLIGHTLEDGER_SCHOOL": "north",
            "FLIGHTLEDGER_QBO_ENVIRONMENT": "simulator",
            "FLIGHTLEDGER_QBO_SIMULATOR_URL": sim.url,
            "FLIGHTLEDGER_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "FLIGHTLEDGER_OPERATOR": "ops-anna",
        }
    )
    return env


@pytest.fixture
def cli(env: dict[str, str], tmp_path: Path) -> Script:
    """The real executable, the contract under test."""
    return Script(env, tmp_path)


@pytest.fixture
def given(env: dict[str, str]) -> Cli:
    """The same commands in this process, for the state a test starts from."""
    return Cli({**env, "OAUTHLIB_INSECURE_TRANSPORT": "1"})


def connected(given: Cli) -> None:
    """The school connected through the simulator's OAuth."""
    connect_via_cli(given)


def recorded(given: Cli, tmp_path: Path) -> None:
    """Five flights (and a rejected line), an invoice request and a payment for F-1."""
    path = tmp_path / "given.jsonl"
    path.write_text(jsonl(flight_rows()) + '{"flight_id": "F-6"}\n')
    assert given("record", "flight-ended", str(path))[0] == 2
    path.write_text(jsonl([invoice_request()]))
    given.ok("record", "invoice-requested", str(path))
    path.write_text(jsonl([payment(applies_to="F-1")]))
    given.ok("record", "payment-received", str(path))


def mapped(given: Cli) -> None:
    """Everything but fuel_surcharge mapped; auto-invoice on."""
    for args in MAPPINGS:
        given.ok("mappings", "set", *args)
    given.ok("settings", "auto-invoice", "on")


def synced(given: Cli) -> None:
    """Worker pass, fuel_surcharge mapped, Retry Failed by ops-ben, worker pass: all synced."""
    given.ok("worker", "--until-idle", "--max-seconds", "60")
    given.ok("mappings", "set", "charge", "fuel_surcharge", "--item", "3")
    given.ok("retry-failed", "--reason", "missing_mapping", "--operator", "ops-ben")
    summary = given.ok("worker", "--until-idle", "--max-seconds", "60")
    assert (summary["synced"], summary["action_required"]) == (7, 0)


def test_connection_commands(cli: Script) -> None:
    """status, connect, callback (a used state refused), test, history, disconnect."""
    code, status, _ = cli("connection", "status")
    assert code == 0 and set(status) >= STATUS_FIELDS and status["pill"] == "Not connected"
    assert status["tone"] == "grey"

    code, started, _ = cli("connection", "connect")
    assert code == 0 and set(started) >= {"authorization_url", "state"}
    answer = requests.get(started["authorization_url"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    code, connected, err = cli("connection", "callback", answer.headers["Location"])
    assert code == 0 and connected["ok"] is True, err
    assert set(connected) >= {"ok", "company", "country", "message"}
    assert connected["message"] == "Connected to Sunrise Flight School (US)"
    code, again, _ = cli("connection", "callback", answer.headers["Location"])
    assert code == 1 and "error" in again, "a used state is refused"

    code, tested, _ = cli("connection", "test")
    assert code == 0 and tested["ok"] is True and tested["country"] == "US"
    code, status, _ = cli("connection", "status")
    assert (status["pill"], status["tone"], status["realm"]) == ("Connected", "green", REALM)
    code, connection_history, _ = cli("history", "connection")
    assert code == 0 and "Connected" in [h["type"] for h in connection_history]

    code, gone, _ = cli("connection", "disconnect")
    assert (code, gone) == (0, {"ok": True})
    code, status, _ = cli("connection", "status")
    assert status["pill"] == "Not connected"


def test_record_commands(cli: Script, tmp_path: Path) -> None:
    """record from a file and from stdin: counts, duplicates, rejected lines and exit 2."""
    flights = tmp_path / "flights.jsonl"
    rows = flight_rows()
    flights.write_text(jsonl(rows) + '{"flight_id": "F-6"}\n')
    code, recorded, _ = cli("record", "flight-ended", str(flights))
    assert code == 2, "a rejected line makes the exit code 2"
    assert (recorded["recorded"], recorded["duplicates"]) == (5, 0)
    assert recorded["rejected"][0]["line"] == 6 and set(recorded["rejected"][0]) == {
        "line",
        "field",
        "reason",
    }
    code, recorded, _ = cli("record", "flight-ended", "-", stdin=jsonl(rows[:2]))
    assert code == 0 and recorded == {"recorded": 0, "duplicates": 2, "rejected": []}
    code, recorded, _ = cli("record", "invoice-requested", "-", stdin=jsonl([invoice_request()]))
    assert code == 0 and recorded["recorded"] == 1
    code, recorded, _ = cli(
        "record", "payment-received", "-", stdin=jsonl([payment(applies_to="F-1")])
    )
    assert code == 0 and recorded["recorded"] == 1


def test_mapping_and_settings_commands(cli: Script, given: Cli, tmp_path: Path) -> None:
    """mappings set/check/list, settings auto-invoice and the checklist, on a connected school."""
    connected(given)
    recorded(given, tmp_path)
    for args in MAPPINGS:
        code, done, _ = cli("mappings", "set", *args)
        assert (code, done["ok"], done["checked"], done["warnings"]) == (0, True, True, [])
    code, checked, _ = cli("mappings", "check")
    assert code == 0
    assert [(m["kind"], m["key"], m["used_by"]) for m in checked["missing"]] == [
        ("charge", "fuel_surcharge", ["F-5"])
    ]
    code, listed, _ = cli("mappings", "list")
    student = {"kind": "student", "key": "S-8", "qbo_id": "8", "active": True}
    assert code == 0 and any(student.items() <= row.items() for row in listed)
    assert cli("settings", "auto-invoice", "on")[:2] == (0, {"ok": True})
    code, checklist, _ = cli("checklist")
    assert code == 0 and all(set(i) >= {"item", "ok", "fix"} for i in checklist)
    assert [i["item"] for i in checklist if not i["ok"]] == [
        "Every charge code in use mapped to an active Item",
        "Worker seen recently",
    ]


def test_worker_events_and_retry_commands(
    cli: Script, given: Cli, sim: QboSimulator, tmp_path: Path
) -> None:
    """worker --until-idle, events (filters, groups), retry-failed refused, requeued, idempotent."""
    connected(given)
    recorded(given, tmp_path)
    mapped(given)
    code, summary, _ = cli("worker", "--until-idle", "--max-seconds", "60")
    assert code == 0 and summary["synced"] == 6 and summary["action_required"] == 1

    code, events, _ = cli("events")
    assert code == 0 and len(events) == 7 and all(set(e) >= EVENT_FIELDS for e in events)
    code, groups, _ = cli("events", "--group-by", "reason")
    assert [{k: g[k] for k in ("reason_code", "count", "example", "fix")} for g in groups] == [
        {
            "reason_code": "missing_mapping",
            "count": 1,
            "example": "F-5",
            "fix": "Map charge code fuel_surcharge to a QuickBooks item, then press Retry Failed",
        }
    ]
    code, waiting, _ = cli("events", "--status", "action_required")
    assert [e["reference"] for e in waiting] == ["F-5"]
    assert cli("events", "--status", "bogus")[0] == 2

    code, refused, err = cli("retry-failed", "--reason", "missing_mapping")
    assert (
        code == 1 and refused["requeued"] == 0 and "fuel_surcharge" in refused["blocked"][0]["why"]
    )
    assert "fuel_surcharge" in err
    assert cli("mappings", "set", "charge", "fuel_surcharge", "--item", "3")[0] == 0
    code, retried, _ = cli("retry-failed", "--reason", "missing_mapping", "--operator", "ops-ben")
    assert code == 0 and (retried["requeued"], retried["blocked"]) == (1, [])
    code, twice, _ = cli("retry-failed", "--reason", "missing_mapping")
    assert code == 0 and twice["requeued"] == 0, "pressing it twice does nothing"
    code, summary, _ = cli("worker", "--until-idle", "--max-seconds", "60")
    assert code == 0 and summary["synced"] == 7 and summary["action_required"] == 0
    invoices = [i for i in sim.invoices() if i["realm"] == REALM]
    assert sorted(i["doc_number"] for i in invoices) == sorted(
        [f"FL-F-{i}" for i in range(1, 6)] + ["IR-R-1"]
    )
    assert len(sim.payments()) == 1


def test_history_dismiss_view_and_audit_commands(cli: Script, given: Cli, tmp_path: Path) -> None:
    """history, dismiss, view rebuild, audit export/verify, after everything was synced."""
    connected(given)
    recorded(given, tmp_path)
    mapped(given)
    synced(given)

    code, history, _ = cli("history", "F-5")
    assert code == 0 and all(set(h) >= {"position", "at", "type", "actor", "data"} for h in history)
    assert [h["position"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["type"] for h in history] == [
        "FlightEnded",
        "ActionRequired",
        "RetryRequested",
        "PushStarted",
        "Synced",
    ]
    assert history[2]["actor"] == "ops-ben"
    assert cli("history", "F-404")[0] == 1

    assert cli("record", "flight-ended", "-", stdin=jsonl([flight("F-9", "S-7")]))[0] == 0
    assert cli("dismiss", "F-9", "--note", "entered twice")[:2] == (0, {"ok": True})
    assert cli("dismiss", "F-1", "--note", "too late")[0] == 1, "a synced invoice stays"
    code, rebuilt, _ = cli("view", "rebuild")
    assert code == 0 and set(rebuilt) == {"events", "seconds"}
    code, dismissed, _ = cli("events", "--status", "dismissed")
    assert [e["reference"] for e in dismissed] == ["F-9"]

    export = subprocess.run(
        [EXE, "audit", "export", "--format", "jsonl"],
        capture_output=True,
        text=True,
        env=cli.env,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in export.stdout.splitlines()]
    assert len(lines) > 20 and [x["position"] for x in lines] == sorted(
        x["position"] for x in lines
    )
    in_log = {(x["aggregate_id"], x["version"]): x["position"] for x in lines}
    f5_id = next(e["id"] for e in given.ok("events") if e["reference"] == "F-5")
    assert [h["log_position"] for h in history] == [
        in_log[(f5_id, h["position"])] for h in history
    ], "history's log positions are the positions audit export shows"
    code, verified, _ = cli("audit", "verify")
    assert code == 0 and verified["ok"] is True and verified["events"] == len(lines)
    assert set(verified) >= {"ok", "events", "head"}


def test_usage_errors_exit_2_without_traceback(cli: Script) -> None:
    """Bad flags and bad URLs are usage errors (exit 2) with a stated reason."""
    assert cli("events", "--as-of", "yesterday")[0] == 2
    assert cli("settings", "auto-invoice", "maybe")[0] == 2
    assert cli("retry-failed", "--reason", "gremlins")[0] == 2
    code, _, err = cli("--db", "mysql://x/y", "events")
    assert code == 2 and "unsupported scheme" in err
    code, _, err = cli("record", "flight-ended", "/nonexistent.jsonl")
    assert code == 2 and "no such file" in err
