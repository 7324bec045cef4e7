"""The events, view rebuild and audit commands through the CLI (typer's CliRunner)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from domain.ports import FixedClock, ReasonCode
from tests.factories import flight, jsonl
from workers.bootstrap import open_ledger
from workers.cli import _register_commands, app
from workers.logging import configure_logging

configure_logging()  # as main() does: logs to stderr, stdout carries only the JSON
_register_commands()


@pytest.fixture
def runner() -> CliRunner:
    """A CLI runner."""
    return CliRunner()


def _invoke(runner: CliRunner, url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--db", url, "--json", *args])
    return result.exit_code, result.stdout


@pytest.fixture
def logged(db_url: str, tmp_path: Path, clock: FixedClock, runner: CliRunner) -> str:
    """A log with three flights: one synced, one waiting for a charge-code mapping."""
    source = tmp_path / "flights.jsonl"
    source.write_text(jsonl([flight("F-1"), flight("F-2"), flight("F-3")]))
    code, out = _invoke(runner, db_url, "record", "flight-ended", str(source))
    assert code == 0, out
    ledger = open_ledger(db_url, clock=clock)
    first, second = ledger.find("default", "F-1"), ledger.find("default", "F-2")
    first.start_push(request_id="r", doc_number="FL-F-1", batched=False, actor="w", at=clock.at)
    first.mark_synced(qbo_id="130", doc_number="FL-F-1", actor="w", at=clock.at)
    second.require_action(
        reason_code=ReasonCode.MISSING_MAPPING,
        message="Charge code fuel_surcharge is not mapped",
        missing=["charge:fuel_surcharge"],
        actor="w",
        at=clock.at,
    )
    ledger.save(first, second)
    ledger.close()
    return db_url


def test_events_json_has_the_contract_fields(runner: CliRunner, logged: str) -> None:
    """`events --json` lists every row with CLI.md's fields, caught up with the log."""
    code, out = _invoke(runner, logged, "events")
    assert code == 0
    rows = json.loads(out)
    assert [r["reference"] for r in rows] == ["F-1", "F-2", "F-3"]
    expected = {"id", "kind", "reference", "status", "reason_code", "reason", "attempts"}
    expected |= {"qbo_id", "doc_number", "amount", "updated_at"}
    assert expected <= set(rows[0])
    assert (rows[0]["status"], rows[0]["qbo_id"], rows[0]["attempts"]) == ("synced", "130", 1)
    assert rows[0]["amount"] == "270.00"


def test_events_filters_by_status_and_reason(runner: CliRunner, logged: str) -> None:
    """--status and --reason narrow the rows."""
    _, out = _invoke(runner, logged, "events", "--status", "pending")
    assert [r["reference"] for r in json.loads(out)] == ["F-3"]
    _, out = _invoke(runner, logged, "events", "--reason", "missing_mapping")
    assert [r["reference"] for r in json.loads(out)] == ["F-2"]


def test_events_group_by_reason_says_the_fix(runner: CliRunner, logged: str) -> None:
    """--group-by reason gives count, example and the fix naming the missing key."""
    code, out = _invoke(runner, logged, "events", "--group-by", "reason")
    assert code == 0
    (group,) = json.loads(out)
    assert (group["reason_code"], group["count"], group["example"]) == ("missing_mapping", 1, "F-2")
    assert group["fix"] == (
        "Map charge code fuel_surcharge to a QuickBooks item, then press Retry Failed"
    )


def test_events_as_of_shows_the_past(runner: CliRunner, logged: str) -> None:
    """--as-of before anything was recorded shows nothing; --as-of now shows the present."""
    _, out = _invoke(runner, logged, "events", "--as-of", "2000-01-01T00:00:00Z")
    assert json.loads(out) == []
    _, out = _invoke(runner, logged, "events", "--as-of", "2999-01-01T00:00:00")
    assert {r["status"] for r in json.loads(out)} == {"synced", "action_required", "pending"}


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--status", "lost"], "--status"),
        (["--reason", "nope"], "--reason"),
        (["--as-of", "yesterday"], "--as-of"),
    ],
)
def test_events_refuses_invalid_options(
    runner: CliRunner, sqlite_url: str, args: list[str], flag: str
) -> None:
    """Invalid --status/--reason/--as-of exit 2 and name the flag."""
    result = runner.invoke(app, ["--db", sqlite_url, "events", *args])
    assert result.exit_code == 2
    assert flag in result.stderr


def test_events_human_output_shows_counts(runner: CliRunner, logged: str) -> None:
    """Without --json: a table and the counts per status."""
    result = runner.invoke(app, ["--db", logged, "events"])
    assert result.exit_code == 0
    assert "F-2" in result.stdout
    assert "synced 1" in result.stdout
    assert "action_required 1" in result.stdout


def test_view_rebuild_reports_events_and_seconds(runner: CliRunner, logged: str) -> None:
    """`view rebuild --json` reports every log event applied and the time taken."""
    code, out = _invoke(runner, logged, "view", "rebuild")
    assert code == 0
    result = json.loads(out)
    assert result["events"] == 6
    assert result["seconds"] >= 0


def test_audit_export_streams_the_whole_log(runner: CliRunner, logged: str) -> None:
    """`audit export` writes one line per stored event in order; csv has a header."""
    code, out = _invoke(runner, logged, "audit", "export")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["position"] for e in lines] == sorted(e["position"] for e in lines)
    assert len(lines) == 6
    assert lines[-1]["type"] == "ActionRequired"
    assert lines[-1]["school"] == "default"
    assert lines[-1]["aggregate_type"] == "FinancialEvent"
    _, out = _invoke(runner, logged, "audit", "export", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["type"] for r in rows][:1] == ["FlightEnded"]
    _, out = _invoke(runner, logged, "audit", "export", "--until", "2000-01-01")
    assert out == ""


def test_audit_verify_reports_ok_and_head(runner: CliRunner, logged: str) -> None:
    """`audit verify --json` is ok on an untouched log and names the head hash."""
    code, out = _invoke(runner, logged, "audit", "verify")
    assert code == 0
    result = json.loads(out)
    assert (result["ok"], result["events"]) == (True, 6)
    assert len(result["head"]) == 64
