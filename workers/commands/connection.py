"""`connection connect|callback|status|test|disconnect` (CLI.md): the QuickBooks link."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console

from adapters.quickbooks.oauth import UntrustedAuthorizationUrl
from adapters.quickbooks.settings import QboSettingsError
from adapters.vault import VaultError
from domain.ports import AuthorizationFailed
from services.connection import (
    ConnectionStepRefused,
    ConnectionUseCases,
    check_document,
    connection_status,
)
from workers.commands.mappings import OPERATOR, default_operator
from workers.context import CliContext, emit, fail, get_context
from workers.qbo import connection_service

connection_app = typer.Typer(help="Connect this school to QuickBooks Online and check the link.")
T = TypeVar("T")


def _service(cli: CliContext) -> ConnectionUseCases:
    """The school's connection use cases, wired from the CLI's environment (workers/qbo.py)."""
    return connection_service(cli.ledger(), cli.config.database, cli.config.env)


@contextmanager
def _refusals(cli: CliContext) -> Iterator[None]:
    """Known failures become a stated reason on stderr (and {"error"} with --json)."""
    try:
        yield
    except (
        UntrustedAuthorizationUrl,
        ConnectionStepRefused,
        AuthorizationFailed,
        QboSettingsError,
        VaultError,
    ) as exc:
        fail(cli, str(exc))


def _run(cli: CliContext, action: Callable[[ConnectionUseCases], T]) -> T:
    with _refusals(cli):
        return action(_service(cli))
    raise AssertionError("unreachable")  # pragma: no cover - fail() always raises


@connection_app.command("connect")
def connect(ctx: typer.Context) -> None:
    """Print the authorization URL to open in a browser (validated)."""
    cli = get_context(ctx)
    url, state = _run(cli, lambda s: s.connect(cli.school))

    def human(console: Console) -> None:
        console.print("Open this URL to connect QuickBooks, then run 'connection callback URL':")
        console.print(url, markup=False)

    emit(cli, {"authorization_url": url, "state": state}, human)


@connection_app.command("callback")
def callback(
    ctx: typer.Context,
    url: str = typer.Argument(..., help="The redirect URL QuickBooks sent the browser to"),
    operator: str | None = OPERATOR,
    switch_company: bool = typer.Option(
        False,
        "--switch-company",
        help="Allow connecting a different QuickBooks company than the one holding this "
        "school's invoices (records that may be in the old company wait for an operator)",
    ),
) -> None:
    """Complete the connection from the redirect URL (the state and the realm are checked)."""
    cli = get_context(ctx)
    who = operator or default_operator()
    result = _run(
        cli, lambda s: s.callback_steps(cli.school, url, who, switch_company=switch_company)
    )
    check = result.check
    data = check_document(check)

    def human(console: Console) -> None:
        for line in result.steps:
            console.print(line, markup=False)

    emit(cli, data, human)
    if not check.ok:
        raise typer.Exit(1)


@connection_app.command("status")
def status(ctx: typer.Context) -> None:
    """The connection pill and the refresh-token badge."""
    cli = get_context(ctx)
    ledger = cli.ledger()
    data = connection_status(ledger, cli.school, ledger.clock.now())

    def human(console: Console) -> None:
        line = f"{data['pill']} ({data['tone']}) · refresh token: {data['badge']}"
        console.print(line, markup=False)
        if data["company"]:
            console.print(f"Company: {data['company']} ({data['country']})", markup=False)
        if data["last_error"]:
            console.print(f"Last error: {data['last_error']}", markup=False)

    emit(cli, data, human)


@connection_app.command("test")
def test(ctx: typer.Context, operator: str | None = OPERATOR) -> None:
    """A live check against QuickBooks; exit 1 when it fails."""
    cli = get_context(ctx)
    who = operator or default_operator()
    check = _run(cli, lambda s: s.test(cli.school, who))
    data = check_document(check)
    emit(cli, data, lambda console: console.print(check.message, markup=False))
    if not check.ok:
        if not cli.json_output:
            Console(stderr=True, highlight=False).print(f"error: {check.message}", markup=False)
        raise typer.Exit(1)


@connection_app.command("disconnect")
def disconnect(ctx: typer.Context, operator: str | None = OPERATOR) -> None:
    """Revoke the tokens at QuickBooks and forget them."""
    cli = get_context(ctx)
    who = operator or default_operator()
    ok = _run(cli, lambda s: s.disconnect(cli.school, who))
    emit(cli, {"ok": ok}, lambda console: console.print("QuickBooks disconnected."))


def register(app: typer.Typer) -> None:
    """Add `connection ...` to the CLI."""
    app.add_typer(connection_app, name="connection")
