"""Log records as data for tests: every level, the bound contextvars merged in (issue 10)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from structlog.typing import EventDict


@contextmanager
def captured_logs() -> Iterator[list[EventDict]]:
    """Every record logged meanwhile, at any level, with the contextvars merged in as
    workers/logging.py does; the configuration before is restored after.

    structlog.testing.capture_logs() swaps the processors only: after `configure_logging()` (the
    CLI's main, run by some tests) the WARNING level filter would still drop info and debug lines.
    """
    saved = structlog.get_config()
    capture = structlog.testing.LogCapture()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    try:
        yield capture.entries
    finally:
        structlog.configure(**saved)


def events(logs: list[EventDict], name: str) -> list[EventDict]:
    """The records of one event name."""
    return [entry for entry in logs if entry["event"] == name]
