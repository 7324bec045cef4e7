"""`keys create|list|revoke`: the school's API keys (API.md); a key is shown once."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from domain.api_keys import ApiKey, KeyRefused
from workers.commands.mappings import OPERATOR, default_operator
from workers.context import EXIT_USAGE, emit, fail, get_context, table

keys_app = typer.Typer(help="API keys of the school for the HTTP API (/api/v1).")


def key_json(key: ApiKey) -> dict[str, Any]:
    """A key as `keys list` shows it (never its value)."""
    return {
        "id": key.id,
        "name": key.name,
        "school": key.school,
        "permissions": list(key.permissions),
        "active": key.active,
        "created_at": key.created_at,
        "created_by": key.created_by,
        "revoked_at": key.revoked_at,
    }


@keys_app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="Who uses the key (the actor in the log)"),
    permissions: str = typer.Option(
        ..., "--permissions", help="Comma-separated, e.g. records:write or billing:view"
    ),
    operator: str | None = OPERATOR,
) -> None:
    """Make a key; it is printed once and only its hash is kept."""
    cli = get_context(ctx)
    try:
        key, text = cli.ledger().create_api_key(
            cli.school,
            name=name,
            permissions=permissions.split(","),
            operator=operator or default_operator(),
        )
    except KeyRefused as exc:
        fail(cli, f"--{exc.field}: {exc.reason}", EXIT_USAGE)
    data = {
        "id": key.id,
        "name": key.name,
        "key": text,
        "school": key.school,
        "permissions": list(key.permissions),
    }

    def human(console: Console) -> None:
        console.print(f"API key {key.id} ({key.name}) for school {key.school}:")
        console.print(text, markup=False, highlight=False)
        console.print("Store it now: it is not shown again.")

    emit(cli, data, human)


@keys_app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """The school's keys (no key values)."""
    cli = get_context(ctx)
    ring = cli.ledger().api_keys(cli.school)
    rows = [key_json(k) for k in sorted(ring.keys.values(), key=lambda k: k.created_at)]

    def human(console: Console) -> None:
        console.print(
            table(
                ["id", "name", "permissions", "active"],
                [
                    [r["id"], r["name"], ",".join(r["permissions"]), "yes" if r["active"] else "no"]
                    for r in rows
                ],
            )
        )

    emit(cli, rows, human)


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., metavar="ID", help="The key's id (from keys list)"),
    operator: str | None = OPERATOR,
) -> None:
    """Revoke a key: refused from the next request on."""
    cli = get_context(ctx)
    try:
        cli.ledger().revoke_api_key(cli.school, key_id, operator=operator or default_operator())
    except KeyRefused as exc:
        fail(cli, exc.reason)
    emit(cli, {"ok": True}, lambda c: c.print(f"API key {key_id} revoked"))


def register(app: typer.Typer) -> None:
    """Add the `keys` group."""
    app.add_typer(keys_app, name="keys")
