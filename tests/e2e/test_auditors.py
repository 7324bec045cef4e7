"""Auditors through the CLI: a tampered log refused cleanly, exports per school, and the
read-only commands on a read-only copy of a SQLite log."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

from tests.factories import flight, jsonl
from tests.helpers_qbo import Cli
from tests.integration.test_audit import _tamper


def _logged(db_url: str, tmp_path: Path) -> Cli:
    """A log with three flights of school 'default' and one of 'other', projected."""
    cli = Cli({"FLIGHTLEDGER_DB": db_url})
    (tmp_path / "a.jsonl").write_text(jsonl([flight(f"F-{i}") for i in range(1, 4)]))
    (tmp_path / "b.jsonl").write_text(jsonl([flight("F-9")]))
    cli.ok("record", "flight-ended", str(tmp_path / "a.jsonl"))
    cli.ok("record", "flight-ended", str(tmp_path / "b.jsonl"), school="other")
    cli.ok("events")
    return cli


def test_verify_on_a_tampered_log_exits_1_with_the_position(db_url: str, tmp_path: Path) -> None:
    """`audit verify` on an edited log: exit 1, {"ok": false, "first_bad_position", "message"}."""
    cli = _logged(db_url, tmp_path)
    assert cli.ok("audit", "verify")["ok"] is True
    _tamper(db_url, 2)
    refused = cli.full("audit", "verify")
    assert refused.code == 1
    assert refused.data["ok"] is False and refused.data["first_bad_position"] == 2
    assert "position 2" in refused.data["message"]
    assert "position 2" in refused.stderr


def test_export_honours_school(db_url: str, tmp_path: Path) -> None:
    """`audit export --school other` has only that school's events; --all-schools has all."""
    cli = _logged(db_url, tmp_path)
    other = cli.runner.invoke(
        __import__("workers.cli", fromlist=["app"]).app,
        ["--school", "other", "audit", "export"],
        env=cli.env,
    )
    lines = [json.loads(line) for line in other.stdout.splitlines()]
    assert [e["data"]["reference"] for e in lines] == ["F-9"]
    assert {e["school"] for e in lines} == {"other"}
    every = cli.runner.invoke(
        __import__("workers.cli", fromlist=["app"]).app,
        ["audit", "export", "--all-schools"],
        env=cli.env,
    )
    assert len(every.stdout.splitlines()) == 4


def test_read_only_commands_on_a_read_only_copy(sqlite_url: str, tmp_path: Path) -> None:
    """events, history, audit export/verify and connection status read a read-only copy
    (?mode=ro, file and folder without write permission), even one whose view lags."""
    cli = _logged(sqlite_url, tmp_path)
    (tmp_path / "late.jsonl").write_text(jsonl([flight("F-4")]))
    cli.ok("record", "flight-ended", str(tmp_path / "late.jsonl"))  # not projected yet
    source = Path(sqlite_url.removeprefix("sqlite:///"))
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    for file in source.parent.glob(source.name + "*"):
        shutil.copy(file, copy_dir / file.name)
    copy = copy_dir / source.name
    for file in copy_dir.iterdir():
        file.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    copy_dir.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    before = copy.read_bytes()
    try:
        ro = Cli({"FLIGHTLEDGER_DB": f"sqlite:///{copy}?mode=ro"})
        rows = ro.ok("events")
        assert sorted(r["reference"] for r in rows) == ["F-1", "F-2", "F-3", "F-4"]
        assert ro.ok("history", "F-4")[0]["type"] == "FlightEnded"
        assert ro.ok("audit", "verify")["ok"] is True
        assert ro.ok("connection", "status")["pill"] == "Not connected"
        exported = ro.runner.invoke(
            __import__("workers.cli", fromlist=["app"]).app, ["audit", "export"], env=ro.env
        )
        assert exported.exit_code == 0 and len(exported.stdout.splitlines()) == 4
        assert copy.read_bytes() == before, "nothing was written to the copy"
    finally:
        copy_dir.chmod(stat.S_IRWXU)
