"""`record flight-ended|invoice-requested|payment-received FILE` and the corrections."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, BinaryIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from domain.records import RecordKind
from workers.bulk_import import ImportTotals, import_lines, pipeline_wanted, start_pool
from workers.context import EXIT_USAGE, CliContext, emit, fail, get_context, stderr

record_app = typer.Typer(help="Validate and append financial facts (JSON lines; '-' = stdin).")


def _open(path: str) -> BinaryIO:
    """The input as bytes (each line is decoded on its own): '-', a file, a FIFO, /dev/stdin.

    Raises IsADirectoryError / FileNotFoundError / PermissionError for the caller to word.
    """
    if path == "-":
        return sys.stdin.buffer
    if Path(path).is_dir():
        raise IsADirectoryError(path)
    return Path(path).open("rb")


def _count_lines(path: str) -> int | None:
    """Lines of a regular file (for the progress bar); None for a pipe, which reads only once."""
    if path == "-" or not Path(path).is_file():
        return None
    with Path(path).open("rb") as handle:
        return sum(1 for _ in handle)


def import_file(
    cli: CliContext, kind: RecordKind, path: str, *, actor: str, progress: bool
) -> dict[str, Any]:
    """Import one file, one transaction per chunk of lines (worker processes for big files)."""
    total_lines = _count_lines(path) if progress else None
    bar = (
        Progress(
            TextColumn("[bold]recording[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        if progress
        else nullcontext()
    )
    with _open(path) as handle, bar as live:
        task = live.add_task(kind.value, total=total_lines) if isinstance(live, Progress) else None

        def on_chunk(totals: ImportTotals) -> None:
            if isinstance(live, Progress) and task is not None:
                live.update(task, completed=totals.lines)

        # Workers start before the ledger opens its connections, so none is inherited.
        regular = path != "-" and Path(path).is_file()
        pool = start_pool() if pipeline_wanted(path if regular else None) else None
        try:
            totals = import_lines(
                cli.ledger(),
                kind,
                handle,
                school=cli.school,
                actor=actor,
                pool=pool,
                on_chunk=on_chunk,
            )
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    return totals.summary()


def _run(ctx: typer.Context, kind: RecordKind, path: str, operator: str) -> None:
    cli = get_context(ctx)
    show_progress = not cli.json_output and sys.stderr.isatty() and path != "-"
    try:
        summary = import_file(cli, kind, path, actor=operator, progress=show_progress)
    except FileNotFoundError:
        fail(cli, f"FILE: no such file: {path}", EXIT_USAGE)
    except IsADirectoryError:
        fail(cli, f"FILE: is a directory: {path}", EXIT_USAGE)
    except PermissionError:
        fail(cli, f"FILE: permission denied: {path}", EXIT_USAGE)

    def human(console: Console) -> None:
        console.print(
            f"recorded {summary['recorded']}, duplicates {summary['duplicates']}, "
            f"rejected {len(summary['rejected'])}"
        )
        err = stderr()
        for item in summary["rejected"][:50]:
            err.print(f"line {item['line']}: {item['field']}: {item['reason']}", markup=False)
        if len(summary["rejected"]) > 50:
            err.print(f"... and {len(summary['rejected']) - 50} more rejected lines")

    emit(cli, summary, human)
    if summary["rejected"]:
        raise typer.Exit(EXIT_USAGE)


OPERATOR = typer.Option("system", "--operator", help="Who is recording (kept in the log)")
FILE = typer.Argument(..., help="JSON-lines file, or '-' for stdin")


@record_app.command("flight-ended")
def record_flight_ended(ctx: typer.Context, file: str = FILE, operator: str = OPERATOR) -> None:
    """Record flights that ended."""
    _run(ctx, RecordKind.FLIGHT_ENDED, file, operator)


@record_app.command("invoice-requested")
def record_invoice_requested(
    ctx: typer.Context, file: str = FILE, operator: str = OPERATOR
) -> None:
    """Record invoice requests."""
    _run(ctx, RecordKind.INVOICE_REQUESTED, file, operator)


@record_app.command("payment-received")
def record_payment_received(ctx: typer.Context, file: str = FILE, operator: str = OPERATOR) -> None:
    """Record payments received."""
    _run(ctx, RecordKind.PAYMENT_RECEIVED, file, operator)


@record_app.command("flight-amended")
def record_flight_amended(ctx: typer.Context, file: str = FILE, operator: str = OPERATOR) -> None:
    """Record corrected flights (the flight-ended shape + amended_at, reason?)."""
    _run(ctx, RecordKind.FLIGHT_AMENDED, file, operator)


@record_app.command("flight-cancelled")
def record_flight_cancelled(ctx: typer.Context, file: str = FILE, operator: str = OPERATOR) -> None:
    """Record flights cancelled after they were recorded."""
    _run(ctx, RecordKind.FLIGHT_CANCELLED, file, operator)


@record_app.command("payment-refunded")
def record_payment_refunded(ctx: typer.Context, file: str = FILE, operator: str = OPERATOR) -> None:
    """Record refunds of recorded payments."""
    _run(ctx, RecordKind.PAYMENT_REFUNDED, file, operator)


def register(app: typer.Typer) -> None:
    """Add the `record` group."""
    app.add_typer(record_app, name="record")
