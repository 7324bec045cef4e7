"""`record flight-ended` prints the same summary with worker processes as without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import workers.cli
from tests.integration.test_bulk_import import mixed_file
from workers import bulk_import

workers.cli._register_commands()


def invoke(db: str, path: Path, *, json_output: bool) -> tuple[int, str, str]:
    """Run `record flight-ended FILE` in-process: exit code, stdout, stderr."""
    args = ["--db", db, *(["--json"] if json_output else []), "record", "flight-ended", str(path)]
    result = CliRunner().invoke(workers.cli.app, args)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("json_output", [True, False])
def test_pipeline_output_equals_single_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, json_output: bool
) -> None:
    """20,000 lines with rejects and duplicates: same exit code, stdout and stderr both ways."""
    path = tmp_path / "flights.jsonl"
    path.write_text(mixed_file(), encoding="utf-8")
    monkeypatch.setattr(bulk_import, "PIPELINE_MIN_BYTES", 0)
    piped = invoke(f"sqlite:///{tmp_path / 'piped.db'}", path, json_output=json_output)
    monkeypatch.setattr(bulk_import, "PIPELINE_MIN_BYTES", 10**12)
    single = invoke(f"sqlite:///{tmp_path / 'single.db'}", path, json_output=json_output)
    assert piped == single
    assert piped[0] == 2  # rejected lines make it a usage error, as before
    if json_output:
        summary = json.loads(piped[1])
        assert summary["recorded"] > 19_000 and summary["duplicates"] > 0
        assert summary["rejected"][:2] == [
            {"line": 8, "field": "hobbs.end", "reason": "must be >= hobbs.start (5.00)"},
            {
                "line": 14,
                "field": "record",
                "reason": "is not valid JSON: Expecting property name enclosed in double quotes "
                "at column 2",
            },
        ]
    else:
        assert "line 14: record: is not valid JSON" in piped[2]
        assert "line 8: hobbs.end: must be >= hobbs.start (5.00)" in piped[2]
