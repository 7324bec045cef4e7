"""`retry-failed` and `dismiss`: operator actions on events that wait for a person."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from domain.financial_event import NotFound, TransitionRefused
from domain.retry import SelectionError, retry
from workers.commands.mappings import OPERATOR, default_operator
from workers.context import EXIT_USAGE, CliContext, emit, fail, get_context, table

__all__ = ["SelectionError", "register", "retry"]


def _human(data: dict[str, Any]) -> Any:
    def render(console: Console) -> None:
        console.print(f"requeued {data['requeued']}, skipped {data['skipped']} (nothing to do)")
        if data["blocked"]:
            rows = [[b["reason_code"], b["count"], b["why"]] for b in data["blocked"]]
            console.print(table(["blocked", "count", "why"], rows))

    return render


def _fresh_lists(cli: CliContext) -> Any:
    """The school's QuickBooks lists read again (None when QuickBooks cannot be read)."""
    from domain.qbo_lists import ListsUnavailable
    from workers.qbo_lists import list_service

    try:
        return list_service(cli).refresh(cli.school)
    except ListsUnavailable:
        return None


def register(app: typer.Typer) -> None:
    """Add `retry-failed` and `dismiss`."""

    @app.command("retry-failed")
    def retry_failed(
        ctx: typer.Context,
        reason: str | None = typer.Option(
            None, "--reason", help="A reason group (e.g. missing_mapping), or failed/uncertain"
        ),
        ids: list[str] = typer.Option(
            [], "--id", help="An event id, flight id, request id or payment id (repeatable)"
        ),
        operator: str | None = OPERATOR,
    ) -> None:
        """Requeue failed / Action Required / uncertain events once their cause is fixed."""
        from workers.commands.events import caught_up_view

        cli = get_context(ctx)
        try:
            data = retry(
                cli.ledger(),
                cli.school,
                reason=reason,
                ids=ids,
                operator=operator or default_operator(),
                rows=None if ids else caught_up_view(cli),
                qbo_lists=lambda: _fresh_lists(cli),
            )
        except SelectionError as exc:
            if exc.field == "reason":
                fail(cli, f"--reason: {exc}", EXIT_USAGE)
            fail(cli, str(exc))
        if data["selected"] == 0:
            what = f"in group {reason}" if reason else "waiting for an operator"
            data["message"] = (
                f"nothing to retry: no failed, Action Required or uncertain event {what}"
            )
            emit(cli, data, lambda c: c.print(data["message"]))
            return
        if data["requeued"] == 0 and data["skipped"] == 0 and data["blocked"]:
            why = "; ".join(f"{b['reason_code']}: {b['why']}" for b in data["blocked"])
            fail(cli, f"nothing requeued, the cause is not fixed: {why}", **data)
        emit(cli, data, _human(data))

    @app.command("dismiss")
    def dismiss(
        ctx: typer.Context,
        ref: str = typer.Argument(..., metavar="ID", help="Event id, flight/request/payment id"),
        note: str = typer.Option(..., "--note", help="Why it will not be sent"),
        operator: str | None = OPERATOR,
    ) -> None:
        """Stop one event from being sent (kept in the log with who and why)."""
        cli = get_context(ctx)
        if not note.strip():
            fail(cli, "--note: say why the event will not be sent", EXIT_USAGE)
        try:
            event = cli.ledger().dismiss(
                cli.school, ref, operator=operator or default_operator(), note=note
            )
        except (NotFound, TransitionRefused) as exc:
            fail(cli, str(exc))
        emit(cli, {"ok": True}, lambda c: c.print(f"dismissed {event.reference}"))
