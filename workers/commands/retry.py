"""`retry-failed` and `dismiss`: operator actions on events that wait for a person."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console

from domain.application import FlightLedger, NotFound
from domain.financial_event import RETRYABLE_BY_OPERATOR, FinancialEvent, TransitionRefused
from domain.ports import ReasonCode
from projections.view import FinancialEventView
from workers.commands.mappings import OPERATOR, default_operator
from workers.context import EXIT_USAGE, emit, fail, get_context, table
from workers.selection import WAITING_FOR_OPERATOR, events_in

STATUS_GROUPS = ("failed", "uncertain")
REASONS = tuple(r.value for r in ReasonCode) + STATUS_GROUPS


class SelectionError(ValueError):
    """The selection names something that does not exist."""


def select_for_retry(
    ledger: FlightLedger,
    school: str,
    *,
    reason: str | None,
    ids: Sequence[str],
    view: FinancialEventView | None = None,
) -> tuple[list[FinancialEvent], str]:
    """The events an operator chose (ids, a reason group, or everything waiting) and the scope."""
    if reason is not None and reason not in REASONS:
        raise SelectionError(f"--reason: unknown reason {reason!r}; one of {', '.join(REASONS)}")
    if ids:
        events: list[FinancialEvent] = []
        for ref in ids:
            try:
                events.append(ledger.find(school, ref))
            except NotFound as exc:
                raise SelectionError(str(exc)) from None
        scope = "ids:" + ",".join(ids)
    elif view is not None:
        events = events_in(ledger, view, school, WAITING_FOR_OPERATOR, reason=reason)
        scope = f"reason:{reason}" if reason else "all"
    else:  # no view at hand: replay the school's events from the log
        events = [
            e for e in ledger.iter_financial_events(school) if e.status in RETRYABLE_BY_OPERATOR
        ]
        scope = f"reason:{reason}" if reason else "all"
    if reason is not None:
        events = [e for e in events if reason in (e.reason_code, e.status.value)]
    return events, scope


def retry(
    ledger: FlightLedger,
    school: str,
    *,
    reason: str | None,
    ids: Sequence[str],
    operator: str,
    view: FinancialEventView | None = None,
) -> dict[str, Any]:
    """Requeue the chosen events whose cause is fixed (one transaction); say what is blocked."""
    events, scope = select_for_retry(ledger, school, reason=reason, ids=ids, view=view)
    result = ledger.retry_failed(school, events, operator=operator, scope=scope)
    return {
        "requeued": result.requeued,
        "skipped": result.skipped,
        "blocked": [
            {"reason_code": b["reason_code"], "why": b["why"], "count": int(b.get("count", 1))}
            for b in result.blocked
        ],
        "selected": len(events),
    }


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
                view=None if ids else caught_up_view(cli),
            )
        except SelectionError as exc:
            code = EXIT_USAGE if str(exc).startswith("--reason") else 1
            fail(cli, str(exc), code)
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
