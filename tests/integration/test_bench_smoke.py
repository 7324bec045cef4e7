"""Every bench module runs in quick mode and returns a Markdown section (untimed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run as bench_run


@pytest.mark.parametrize("name", [n for n in bench_run.bench_names() if n != "latency"])
def test_bench_quick_run_produces_a_section(name: str) -> None:
    """run(quick=True) completes and returns a '## ' section with a table."""
    section = bench_run.run_bench(name, quick=True)
    assert section.startswith("## ")
    assert "|---" in section


def test_runner_keeps_other_sections_with_only(tmp_path: Path) -> None:
    """--only NAME replaces that section and keeps the others already in the file."""
    out = tmp_path / "benchmarks.md"
    out.write_text(bench_run.render({"zzz_other": "## Other\n\nkept\n", "import": "## Old\n"}))
    assert bench_run.main(["--quick", "--only", "import", "--output", str(out)]) == 0
    text = out.read_text()
    assert "## Other" in text and "kept" in text
    assert "## Old" not in text and "## Bulk import" in text
    assert text.startswith("# Benchmarks") and "cores" in text


def test_runner_keeps_hand_measured_sections_on_a_full_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --only every bench's section is written again; a section no bench module writes
    (figures measured across commits) stays as it is."""
    out = tmp_path / "benchmarks.md"
    out.write_text(bench_run.render({"zzz_by_hand": "## By hand\n\nkept\n", "import": "## Old\n"}))
    monkeypatch.setattr(bench_run, "bench_names", lambda: ["import"])  # the full run, shortened
    assert bench_run.main(["--quick", "--output", str(out)]) == 0
    sections = bench_run.split_sections(out.read_text())
    assert sections["zzz_by_hand"] == "## By hand\n\nkept\n"
    assert sections["import"].startswith("## Bulk import")


def test_latency_bench_quick_writes_its_section(tmp_path: Path) -> None:
    """`bench.run --quick --only latency` (serve + worker subprocesses) writes the latency table."""
    out = tmp_path / "benchmarks.md"
    assert bench_run.main(["--quick", "--only", "latency", "--output", str(out)]) == 0
    section = bench_run.split_sections(out.read_text())["latency"]
    assert section.startswith("## Flight to invoice through the HTTP API")
    assert "| POST answer |" in section
    assert "| POST answer to invoice in QuickBooks |" in section
    assert "Every round: 25 invoices, one per flight" in section
