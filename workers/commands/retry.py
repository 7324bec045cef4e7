"""`retry-failed` and `dismiss`: operator actions on events that wait for a person."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from domain.financial_event import NotFound, TransitionRefused
from domain.retry import SelectionError
from services.retry import NoteRequired, dismiss, retry_failed
from workers.commands.mappings import OPERATOR, default_operator
from workers.context import EXIT_USAGE, emit, fail, get_context, table

__all__ = ["register"]


def _human(data: dict[str, Any]) -> Any:
    def render(console: Console) -> None:
        console.print(f"requeued {data['requeued']}, skipped {data['skipped']} (nothing to do)")
        if data["blocked"]:
            rows = [[b["reason_code"], b["count"], b["why"]] for b in data["blocked"]]
            console.print(table(["blocked", "count", "why"], rows))

    return render


def register(app: typer.Typer) -> None:
    """Add `retry-failed` and `dismiss`."""

    @app.command("retry-failed")
    def retry_failed_command(
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
        from workers.qbo_lists import LazyListService

        cli = get_context(ctx)
        try:
            outcome = retry_failed(
                cli.ledger(),
                cli.school,
                reason=reason,
                ids=ids,
                operator=operator or default_operator(),
                rows=None if ids else caught_up_view(cli),
                lists=LazyListService(cli),
            )
        except SelectionError as exc:
            if exc.field == "reason":
                fail(cli, f"--reason: {exc}", EXIT_USAGE)
            fail(cli, str(exc))
        data = outcome.summary()
        if outcome.selected == 0:
            what = f"in group {reason}" if reason else "waiting for an operator"
            data["message"] = (
                f"nothing to retry: no failed, Action Required or uncertain event {what}"
            )
            emit(cli, data, lambda c: c.print(data["message"]))
            return
        if outcome.all_blocked:
            fail(cli, f"nothing requeued, the cause is not fixed: {outcome.why_blocked()}", **data)
        emit(cli, data, _human(data))

    @app.command("dismiss")
    def dismiss_command(
        ctx: typer.Context,
        ref: str = typer.Argument(..., metavar="ID", help="Event id, flight/request/payment id"),
        note: str = typer.Option(..., "--note", help="Why it will not be sent"),
        operator: str | None = OPERATOR,
    ) -> None:
        """Stop one event from being sent (kept in the log with who and why)."""
        cli = get_context(ctx)
        try:
            event = dismiss(
                cli.ledger(), cli.school, ref, operator=operator or default_operator(), note=note
            )
        except NoteRequired as exc:
            fail(cli, f"--note: {exc}", EXIT_USAGE)
        except (NotFound, TransitionRefused) as exc:
            fail(cli, str(exc))
        emit(cli, {"ok": True}, lambda c: c.print(f"dismissed {event.reference}"))
