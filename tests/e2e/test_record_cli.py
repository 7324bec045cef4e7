"""The real `flightledger record` executable: exit codes, stdin '-', never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.record_cli import log_size
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


def test_bad_lines_past_the_first_chunk_are_rejections_with_a_summary(
    db_url: str, tmp_path: Path
) -> None:
    """6,500 lines (several chunks, worker processes): bad lines at 6,001+ are rejections."""
    lines = [json.dumps(flight(f"F-{n}")).encode() for n in range(1, 6501)]
    lines[6000] = b"[" * 50_000 + b"]" * 50_000  # line 6,001: nested far too deep
    lines[6001] = lines[6001][:20] + b"\xff" + lines[6001][20:]  # line 6,002: byte 21 not UTF-8
    lines[6002] = lines[6002].replace(b'"quantity": "1.2"', b'"quantity": ' + b"9" * 20_000)
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = run("--db", db_url, "--json", "record", "flight-ended", str(path))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    assert summary["recorded"] == 6497 and summary["duplicates"] == 0
    assert [(r["line"], r["field"]) for r in summary["rejected"]] == [
        (6001, "record"),
        (6002, "line"),
        (6003, "charges[0].quantity"),
    ]
    assert "at byte 21 of the line" in summary["rejected"][1]["reason"]
    assert log_size(db_url) == 6497  # the rejected lines appended nothing


def test_fifo_dev_stdin_and_process_substitution_are_inputs(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A named pipe, /dev/stdin and <(...) are read like files; a directory is refused."""
    import os
    import threading

    fifo = tmp_path / "flights.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(jsonl([flight("F-PIPE")])))
    writer.start()
    piped = run("--db", sqlite_url, "--json", "record", "flight-ended", str(fifo))
    writer.join()
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["recorded"] == 1
    dev = run(
        "--db", sqlite_url, "--json", "record", "flight-ended", "/dev/stdin",
        stdin=jsonl([flight("F-DEV")]),
    )  # fmt: skip
    assert dev.returncode == 0, dev.stderr
    assert json.loads(dev.stdout)["recorded"] == 1
    source = tmp_path / "one.jsonl"
    source.write_text(jsonl([flight("F-SUB")]))
    script = f'"{EXE}" --db "{sqlite_url}" --json record flight-ended <(cat "{source}")'
    sub = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert sub.returncode == 0, sub.stderr
    assert json.loads(sub.stdout)["recorded"] == 1
    folder = run("--db", sqlite_url, "record", "flight-ended", str(tmp_path))
    assert folder.returncode == 2 and "is a directory" in folder.stderr
    assert "Traceback" not in folder.stderr
