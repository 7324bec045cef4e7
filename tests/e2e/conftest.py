"""Shared browser fixtures: Playwright with Debian's chromium, one browser per test module; the
`serve` (+ worker) stack of tests/e2e/serve_stack.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serve_stack import Stack, running

CHROMIUM = os.environ.get("FLIGHTLEDGER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _browser_unavailable_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401  (only checking that it is installed)
    except ImportError:
        return "the playwright Python package is not installed"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser_available() -> bool:
    """Whether playwright and chromium are here; under CI=true their absence fails."""
    reason = _browser_unavailable_reason()
    if reason is None:
        return True
    if IN_CI:
        pytest.fail(f"CI=true requires the browser tests: {reason}")
    pytest.skip(f"{reason} (run under CI=true to require it)")


@pytest.fixture(scope="module")
def browser(browser_available: bool) -> Iterator[Any]:
    """One chromium for the whole module (launching one costs more than most tests)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in its own context (no cookies shared between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        tab = context.new_page()
        tab.set_default_timeout(10_000)
        yield tab
    finally:
        context.close()


@pytest.fixture
def stack(sqlite_url: str, tmp_path: Path) -> Iterator[Stack]:
    """`flightledger serve` and the simulator, no worker (QuickBooks calls time out after 0.5 s)."""
    with running(sqlite_url, tmp_path, with_worker=False, timeout=0.5) as made:
        yield made


@pytest.fixture
def stack_with_worker(sqlite_url: str, tmp_path: Path) -> Iterator[Stack]:
    """`flightledger serve`, the simulator and a `flightledger worker` subprocess left running."""
    with running(sqlite_url, tmp_path, with_worker=True) as made:
        yield made
