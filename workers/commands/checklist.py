"""`checklist`: the setup checklist, each line ok or the exact thing to do."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer
from rich.console import Console

from domain.checklist import ChecklistItem
from workers.context import CliContext, emit, get_context, table
from workers.selection import checklist


def checklist_for(cli: CliContext) -> list[ChecklistItem]:
    """Every checklist line for the CLI's school."""
    from workers.commands.events import caught_up_view

    return checklist(cli.ledger(), caught_up_view(cli), cli.config.database, cli.school)


def register(app: typer.Typer) -> None:
    """Add `checklist`."""

    @app.command("checklist")
    def checklist(ctx: typer.Context) -> None:
        """Why flights end but no invoices appear: each line ok or what to do."""
        cli = get_context(ctx)
        items = checklist_for(cli)
        data: list[dict[str, Any]] = [asdict(i) for i in items]

        def render(console: Console) -> None:
            rows = [["ok" if i.ok else "TODO", i.item, i.fix or i.detail] for i in items]
            console.print(table(["", "item", "fix"], rows, title="Setup checklist"))

        emit(cli, data, render)
