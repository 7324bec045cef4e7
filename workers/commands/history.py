"""`history REF`: every event of one financial event (or the connection), in order."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from adapters.jsonable import to_jsonable
from domain.financial_event import NotFound
from workers.context import emit, fail, get_context, table


def history(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., help="Event id, flight id, request id, payment id, or 'connection'"
    ),
) -> None:
    """Show every event of one financial event, the connection, mappings or settings."""
    cli = get_context(ctx)
    try:
        entries = cli.ledger().history(cli.school, ref)
    except NotFound as exc:
        fail(cli, str(exc))
    rows = [
        {
            "position": e.position,
            "at": e.at,
            "type": e.type,
            "actor": e.actor,
            "data": e.data,
            "log_position": e.log_position,
        }
        for e in entries
    ]

    def human(console: Console) -> None:
        if not rows:
            console.print(f"no history yet for {ref}")
            return
        console.print(
            table(
                ["#", "log", "at", "type", "actor", "data"],
                [
                    [
                        r["position"],
                        r["log_position"],
                        r["at"],
                        r["type"],
                        r["actor"],
                        _brief(r["data"]),
                    ]
                    for r in rows
                ],
                title=f"history of {ref}",
            )
        )

    emit(cli, rows, human)


def _brief(data: Any) -> str:
    parts = []
    for key, value in to_jsonable(data).items():
        if value in (None, "", [], {}):
            continue
        text = value if isinstance(value, str) else str(value)
        parts.append(f"{key}={text[:60]}")
    return " ".join(parts)


def register(app: typer.Typer) -> None:
    """Add `history`."""
    app.command("history")(history)
