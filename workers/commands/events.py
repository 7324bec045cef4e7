"""`events`: the financial-event view, filtered, grouped by reason, or as of a past time."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console

from adapters.views import open_view
from domain.ports import ReasonCode
from domain.reasons import fix_for
from projections.financial_events import STATUSES
from projections.view import FinancialEventView, row_json
from workers.context import EXIT_USAGE, CliContext, emit, fail, get_context, table
from workers.projector import Projector, view_as_of

REASONS: tuple[str, ...] = tuple(r.value for r in ReasonCode)
GROUP_BY = ("reason",)


def caught_up_view(cli: CliContext) -> FinancialEventView:
    """The view in the log's database, caught up with the log (closed with the command).

    On a read-only copy the stored view is used when it is complete; otherwise the log is
    folded in memory (nothing can be written there).
    """
    ledger = cli.ledger()
    if cli.config.database.read_only:
        try:
            stored = open_view(cli.config.database)
        except PersistenceError:
            return view_as_of(ledger, datetime.max.replace(tzinfo=UTC))
        cli.closers.append(stored.close)
        try:
            complete = stored.max_tracking_id() >= (ledger.recorder.max_notification_id() or 0)
        except PersistenceError:
            complete = False
        return stored if complete else view_as_of(ledger, datetime.max.replace(tzinfo=UTC))
    view = open_view(cli.config.database)
    cli.closers.append(view.close)
    Projector(ledger, view).catch_up()
    return view


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (a trailing Z or no offset means UTC); ValueError otherwise."""
    at = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def parse_time_option(cli: CliContext, flag: str, text: str) -> datetime:
    """parse_time, or exit 2 naming the flag."""
    try:
        return parse_time(text)
    except ValueError:
        fail(
            cli, f"{flag}: {text!r} is not an ISO 8601 time (e.g. 2026-11-20T17:42:00Z)", EXIT_USAGE
        )


def events(
    ctx: typer.Context,
    status: str | None = typer.Option(None, "--status", help="Only this status"),
    reason: str | None = typer.Option(None, "--reason", help="Only this reason code"),
    group_by: str | None = typer.Option(None, "--group-by", help="'reason': one line per cause"),
    as_of: str | None = typer.Option(None, "--as-of", help="The view as it was at this time"),
) -> None:
    """Show the financial-event view of the school."""
    cli = get_context(ctx)
    if status is not None and status not in STATUSES:
        fail(cli, f"--status: unknown status {status!r}; valid: {', '.join(STATUSES)}", EXIT_USAGE)
    if reason is not None and reason not in REASONS:
        fail(cli, f"--reason: unknown reason {reason!r}; valid: {', '.join(REASONS)}", EXIT_USAGE)
    if group_by is not None and group_by not in GROUP_BY:
        fail(cli, f"--group-by: unknown grouping {group_by!r}; valid: reason", EXIT_USAGE)
    at = parse_time_option(cli, "--as-of", as_of) if as_of is not None else None
    view: FinancialEventView = (
        view_as_of(cli.ledger(), at) if at is not None else caught_up_view(cli)
    )
    if group_by == "reason":
        _emit_groups(cli, view, reason)
        return
    rows = view.list(cli.school, status=status, reason_code=reason)
    counts = view.counts(cli.school)

    def human(console: Console) -> None:
        title = f"financial events of {cli.school}" + (f" as of {at.isoformat()}" if at else "")
        if not rows:
            console.print("no financial events match")
        else:
            console.print(
                table(
                    ["reference", "kind", "status", "amount", "attempts", "doc", "reason"],
                    [
                        [
                            r.reference,
                            r.kind,
                            r.status,
                            r.amount,
                            r.attempts,
                            r.doc_number,
                            f"{r.reason_code}: {r.reason}" if r.reason_code else r.reason,
                        ]
                        for r in rows
                    ],
                    title=title,
                )
            )
        console.print(
            "  ".join(f"{name} {counts[name]}" for name in STATUSES if counts.get(name))
            or "nothing recorded yet"
        )

    emit(cli, [row_json(r) for r in rows], human)


def _emit_groups(cli: CliContext, view: FinancialEventView, reason: str | None) -> None:
    groups = [
        {
            "reason_code": g.reason_code,
            "count": g.count,
            "example": g.example,
            "fix": fix_for(g.reason_code or None, g.missing),
            "missing": list(g.missing),
        }
        for g in view.reason_groups(cli.school)
        if reason is None or g.reason_code == reason
    ]

    def human(console: Console) -> None:
        if not groups:
            console.print("nothing needs action")
            return
        console.print(
            table(
                ["reason", "count", "example", "fix"],
                [[g["reason_code"], g["count"], g["example"], g["fix"]] for g in groups],
                title=f"action required in {cli.school}, by cause",
            )
        )

    emit(cli, groups, human)


def register(app: typer.Typer) -> None:
    """Add `events`."""
    app.command("events")(events)
