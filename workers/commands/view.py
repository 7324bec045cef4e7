"""`view rebuild`: drop the financial-event view and rebuild it from the whole log."""

from __future__ import annotations

import time

import typer

from adapters.views import open_view
from workers.context import emit, get_context
from workers.projector import Projector

view_app = typer.Typer(help="The financial-event view.", no_args_is_help=True)


@view_app.command("rebuild")
def rebuild(ctx: typer.Context) -> None:
    """Drop the view and rebuild it from the whole log."""
    cli = get_context(ctx)
    view = open_view(cli.config.database)
    cli.closers.append(view.close)
    started = time.perf_counter()
    applied = Projector(cli.ledger(), view).rebuild()
    seconds = round(time.perf_counter() - started, 3)
    emit(cli, {"events": applied, "seconds": seconds})


def register(app: typer.Typer) -> None:
    """Add `view rebuild`."""
    app.add_typer(view_app, name="view")
