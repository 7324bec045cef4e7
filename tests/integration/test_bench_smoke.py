"""Every bench module runs in quick mode and returns a Markdown section (untimed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run as bench_run


@pytest.mark.parametrize("name", bench_run.bench_names())
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
