"""The real `flightledger record` executable: exit codes, stdin '-', never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.factories import flight, jsonl, payment

EXE = str(Path(sys.executable).with_name("flightledger"))


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script."""
    return subprocess.run(
        [EXE, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def test_file_import_exits_0_with_counts(sqlite_url: str, tmp_path: Path) -> None:
    """A file of valid flights (one repeated) exits 0 reporting recorded and duplicates."""
    path = tmp_path / "flights.jsonl"
    path.write_text(jsonl([flight("F-1"), flight("F-2"), flight("F-1")]))
    done = run("--db", sqlite_url, "--json", "record", "flight-ended", str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"recorded": 2, "duplicates": 1, "rejected": []}


def test_stdin_dash_and_rejections_exit_2_without_traceback(sqlite_url: str) -> None:
    """'-' reads stdin; a bad line exits 2 naming line, field and reason on stderr."""
    lines = jsonl([payment("P-1"), payment("P-2", amount="-3")]) + "{oops\n"
    done = run("record", "payment-received", "-", "--db", sqlite_url, stdin=lines)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert "line 2: amount:" in done.stderr
    assert "line 3: record:" in done.stderr
    assert "recorded 1, duplicates 0, rejected 2" in done.stdout


def test_missing_file_and_bad_db_url_exit_2_with_reason(sqlite_url: str, tmp_path: Path) -> None:
    """A missing FILE or an unusable --db is a usage error with a stated reason."""
    missing = run("--db", sqlite_url, "record", "flight-ended", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    bad = run("--db", "mysql://x/y", "record", "flight-ended", "-", stdin="")
    assert bad.returncode == 2 and "unsupported scheme" in bad.stderr
    assert "Traceback" not in missing.stderr + bad.stderr
