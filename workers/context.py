"""CLI plumbing shared by every command: global options, output, and errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from adapters.jsonable import to_jsonable
from domain.application import FlightLedger
from workers.bootstrap import Config, open_ledger

EXIT_REFUSED = 1
EXIT_USAGE = 2


@dataclass
class CliContext:
    """Global options plus lazily opened resources, closed at exit."""

    config: Config
    json_output: bool = False
    _ledger: FlightLedger | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def school(self) -> str:
        """The school this command acts in."""
        return self.config.school

    def ledger(self) -> FlightLedger:
        """The application, opened on first use."""
        if self._ledger is None:
            self._ledger = open_ledger(self.config.database)
            self.closers.append(self._ledger.close)
        return self._ledger

    def close(self) -> None:
        """Close whatever was opened."""
        while self.closers:
            self.closers.pop()()


def get_context(ctx: typer.Context) -> CliContext:
    """The CliContext of this invocation."""
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj


def stdout() -> Console:
    """A console on stdout."""
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    """A console on stderr."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def emit(cli: CliContext, data: Any, human: Callable[[Console], None] | None = None) -> None:
    """One JSON document with --json; otherwise the human rendering (or a generic one)."""
    if cli.json_output:
        sys.stdout.write(json.dumps(to_jsonable(data), ensure_ascii=False) + "\n")
        return
    console = stdout()
    if human is not None:
        human(console)
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        console.print(table(list(data[0].keys()), [list(r.values()) for r in data]))
    elif isinstance(data, dict):
        for key, value in data.items():
            console.print(f"[bold]{key}[/bold]: {to_jsonable(value)}")
    else:
        console.print(to_jsonable(data))


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> Table:
    """A rich table of plain values."""
    result = Table(title=title)
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*("" if v is None else str(to_jsonable(v)) for v in row))
    return result


def fail(cli: CliContext | None, message: str, code: int = EXIT_REFUSED, **extra: Any) -> NoReturn:
    """Refuse with a stated reason: stderr always, and {"error": ...} on stdout with --json."""
    if cli is not None and cli.json_output:
        sys.stdout.write(json.dumps(to_jsonable({"error": message, **extra})) + "\n")
    stderr().print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)
