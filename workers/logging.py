"""structlog configuration: JSON for workers, console in a terminal, secrets redacted."""

from __future__ import annotations

import logging
import os
import sys

import structlog

from adapters.redaction import redact_secrets


def configure_logging(level: str | None = None, *, json_logs: bool | None = None) -> None:
    """Configure structlog once for this process (stderr; never stdout, which carries JSON)."""
    level_name = (level or os.environ.get("FLIGHTLEDGER_LOG_LEVEL") or "WARNING").upper()
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level_name, logging.WARNING)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
