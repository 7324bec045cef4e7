"""`demo`: the main job end to end on the embedded default (SQLite + bundled simulator)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from workers.context import emit, get_context


def register(app: typer.Typer) -> None:
    """Add `demo`."""

    @app.command("demo")
    def demo(
        ctx: typer.Context,
        workdir: Path = typer.Option(
            Path(".flightledger/demo"), "--workdir", help="Where the demo's database goes"
        ),
        flights: int = typer.Option(24, "--flights", min=1, max=2000, help="Flights in the day"),
    ) -> None:
        """Connect, map, record a day of flights, sync, fix, Retry Failed, sync: in plain words."""
        from workers.demo import run_demo

        cli = get_context(ctx)
        console = Console(stderr=cli.json_output, highlight=False)
        result = run_demo(workdir, console, flights)
        emit(
            cli,
            {**result.__dict__, "ok": result.ok},
            lambda c: c.print(f"demo finished in {result.seconds} s"),
        )
        if not result.ok:
            raise typer.Exit(1)
