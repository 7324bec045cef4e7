"""structlog configuration: JSON for workers, console in a terminal, secrets redacted.

Every line carries the context bound in structlog's contextvars (a request's `request_id`,
`school`, `actor`; a push pass's `school`, `realm`, `event_id`, `request_id`), the module that
logged it (`logger`: `structlog.get_logger(__name__)` everywhere), its level and an ISO time.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from adapters.redaction import redact_secrets


class NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that keeps the name it was asked for (`structlog.get_logger(__name__)`)."""

    def __init__(self, name: str, file: TextIO | None = None) -> None:
        super().__init__(file)
        self.name = name


class NamedPrintLoggerFactory:
    """Produce NamedPrintLoggers writing to one file."""

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file

    def __call__(self, *args: Any) -> NamedPrintLogger:
        return NamedPrintLogger(str(args[0]) if args else "", self._file)


def add_logger_name(
    logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: `logger` = the logging module's name, when the logger has one."""
    name = getattr(logger, "name", "")
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


def configure_logging(level: str | None = None, *, json_logs: bool | None = None) -> None:
    """Configure structlog once for this process (stderr; never stdout, which carries JSON)."""
    level_name = (level or os.environ.get("FLIGHTLEDGER_LOG_LEVEL") or "WARNING").upper()
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    renderer: list[structlog.typing.Processor] = (
        # a traceback as text before redaction (the console renderer formats its own)
        [structlog.processors.format_exc_info, redact_secrets, structlog.processors.JSONRenderer()]
        if json_logs
        else [redact_secrets, structlog.dev.ConsoleRenderer(colors=False)]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level_name, logging.WARNING)
        ),
        logger_factory=NamedPrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
