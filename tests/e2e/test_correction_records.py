"""`record flight-amended|flight-cancelled|payment-refunded`: new facts, never edits."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_record_cli import run
from tests.factories import amendment, cancellation, flight, jsonl, payment, refund


def record(db: str, kind: str, path: Path, records: list[dict[str, object]]) -> dict[str, object]:
    """Write records to a file and record them through the CLI; the JSON summary."""
    path.write_text(jsonl(records))
    done = run("--db", db, "--json", "record", kind, str(path))
    assert "Traceback" not in done.stderr
    summary: dict[str, object] = json.loads(done.stdout)
    return summary


def test_corrections_are_recorded_duplicates_counted_unknowns_refused(
    db_url: str, tmp_path: Path
) -> None:
    """Amend, cancel and refund append; no-change repeats are duplicates; unknown ids named."""
    f = tmp_path / "f.jsonl"
    record(db_url, "flight-ended", f, [flight("F-1"), flight("F-2")])
    record(db_url, "payment-received", f, [payment("P-1", amount="100.00")])
    amended = record(
        db_url, "flight-amended", f, [amendment("F-1"), amendment("F-1"), amendment("F-9")]
    )
    assert amended["recorded"] == 1 and amended["duplicates"] == 1
    assert amended["rejected"] == [
        {"line": 3, "field": "flight_id", "reason": "no flight 'F-9' has been recorded"}
    ]
    cancelled = record(db_url, "flight-cancelled", f, [cancellation("F-2"), cancellation("F-2")])
    assert cancelled == {"recorded": 1, "duplicates": 1, "rejected": []}
    late = record(db_url, "flight-amended", f, [amendment("F-2")])
    assert late["rejected"] == [
        {"line": 1, "field": "flight_id", "reason": "F-2 was cancelled; it cannot be amended"}
    ]
    refunds = record(
        db_url,
        "payment-refunded",
        f,
        [refund("R-1", amount="60.00"), refund("R-1"), refund("R-2", amount="40.01")],
    )
    assert refunds["recorded"] == 1 and refunds["duplicates"] == 1
    rejected = refunds["rejected"]
    assert isinstance(rejected, list) and rejected[0]["field"] == "amount"
    assert "more than the payment's 100.00" in rejected[0]["reason"]
    events = json.loads(run("--db", db_url, "--json", "events").stdout)
    by_ref = {e["reference"]: e for e in events}
    assert by_ref["F-1"]["amount"] in ("225.00", 225.0, "225")
    assert by_ref["F-2"]["status"] == "cancelled"
    assert by_ref["R-1"]["kind"] == "payment-refunded"
    history = json.loads(run("--db", db_url, "--json", "history", "F-1").stdout)
    assert [h["type"] for h in history] == ["FlightEnded", "FlightAmended"]
    assert history[1]["data"]["reason"] == "Hobbs mistyped"


def test_bad_correction_lines_name_the_field(sqlite_url: str, tmp_path: Path) -> None:
    """A correction with a missing or unknown field is refused naming it; nothing appended."""
    f = tmp_path / "f.jsonl"
    record(sqlite_url, "flight-ended", f, [flight("F-1")])
    bad = dict(cancellation("F-1"))
    del bad["reason"]
    out = record(sqlite_url, "flight-cancelled", f, [bad, {**cancellation("F-1"), "x": 1}])
    assert out["rejected"] == [
        {"line": 1, "field": "reason", "reason": "is required"},
        {"line": 2, "field": "x", "reason": "unknown field"},
    ]
    history = json.loads(run("--db", sqlite_url, "--json", "history", "F-1").stdout)
    assert [h["type"] for h in history] == ["FlightEnded"]
