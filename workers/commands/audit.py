"""`audit export` and `audit verify`: the whole log for auditors, and its tamper check."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import typer
from eventsourcing.persistence import PersistenceError
from rich.markup import escape

from adapters.jsonable import to_jsonable
from adapters.views import open_view
from domain.application import SYSTEM, FlightLedger
from workers.commands.events import parse_time_option
from workers.context import (
    EXIT_REFUSED,
    EXIT_USAGE,
    CliContext,
    emit,
    fail,
    get_context,
    stderr,
)
from workers.projector import iter_notifications, verify_audit_chain

audit_app = typer.Typer(help="The whole log for auditors; tamper check.", no_args_is_help=True)

FORMATS = ("jsonl", "csv")
EXPORT_FIELDS = (
    "position",
    "at",
    "school",
    "aggregate_type",
    "aggregate_id",
    "version",
    "type",
    "actor",
    "data",
)
_BASE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}
_ACTOR_FIELDS = ("actor", "operator")


def export_entries(
    ledger: FlightLedger,
    since: datetime | None = None,
    until: datetime | None = None,
    school: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every stored event in log order as an auditor reads it (pages, memory-bounded); with
    `school`, only the events of that school's aggregates."""
    schools: dict[UUID, str] = {}
    for page in iter_notifications(ledger):
        for notification in page:
            event: Any = ledger.mapper.to_domain_event(notification)
            state = {k: v for k, v in vars(event).items() if k not in _BASE_FIELDS}
            aggregate_id = event.originator_id
            if isinstance(state.get("school"), str):
                schools[aggregate_id] = state["school"]
            at: datetime = event.timestamp
            if (since is not None and at < since) or (until is not None and at > until):
                continue
            if school is not None and schools.get(aggregate_id) != school:
                continue
            actor = next((str(state[k]) for k in _ACTOR_FIELDS if k in state), SYSTEM)
            aggregate_topic = notification.topic.rsplit(".", 1)[0]
            yield {
                "position": notification.id,
                "at": at,
                "school": schools.get(aggregate_id, ""),
                "aggregate_type": aggregate_topic.split(":", 1)[-1],
                "aggregate_id": aggregate_id,
                "version": notification.originator_version,
                "type": type(event).__name__,
                "actor": actor,
                "data": {k: v for k, v in state.items() if k not in _ACTOR_FIELDS},
            }


@audit_app.command("export")
def export(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="Only events at or after (ISO)"),
    until: str | None = typer.Option(None, "--until", help="Only events at or before (ISO)"),
    output_format: str = typer.Option("jsonl", "--format", help="jsonl or csv"),
    all_schools: bool = typer.Option(
        False, "--all-schools", help="Every school's events (default: the --school's only)"
    ),
) -> None:
    """Stream every event of the school (or of the whole log), in order, to stdout."""
    cli = get_context(ctx)
    if output_format not in FORMATS:
        fail(cli, f"--format: unknown format {output_format!r}; valid: jsonl, csv", EXIT_USAGE)
    start = _time(cli, "--since", since)
    end = _time(cli, "--until", until)
    entries = export_entries(cli.ledger(), start, end, None if all_schools else cli.school)
    for line in export_lines(entries, output_format):
        sys.stdout.write(line)


def export_lines(entries: Iterable[dict[str, Any]], output_format: str) -> Iterator[str]:
    """The export as text lines (JSONL, or CSV with a header): the CLI and the dashboard."""
    if output_format == "jsonl":
        for entry in entries:
            yield json.dumps(to_jsonable(entry), ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    for entry in entries:
        plain = to_jsonable(entry)
        plain["data"] = json.dumps(plain["data"], ensure_ascii=False, sort_keys=True)
        writer.writerow([plain[f] for f in EXPORT_FIELDS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def school_export(
    ledger: FlightLedger,
    school: str,
    since: datetime | None,
    until: datetime | None,
    output_format: str,
) -> Iterator[str]:
    """One school's part of `audit export` (the dashboard's download)."""
    return export_lines(export_entries(ledger, since, until, school), output_format)


def _time(cli: CliContext, flag: str, text: str | None) -> datetime | None:
    return None if text is None else parse_time_option(cli, flag, text)


@audit_app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Check the stored log against the audit hash chain."""
    cli = get_context(ctx)
    view: Any
    try:
        view = open_view(cli.config.database)
        cli.closers.append(view.close)
    except PersistenceError:
        if not cli.config.database.read_only:
            raise
        view = _NoStoredChain()  # a read-only copy without a view: recompute, store nothing
    verdict = verify_audit_chain(cli.ledger(), view)
    result: dict[str, Any] = {"ok": verdict.ok, "events": verdict.events, "head": verdict.head}
    if not verdict.ok:
        result["first_bad_position"] = verdict.first_bad_position
        result["message"] = verdict.message
        if cli.json_output:
            sys.stdout.write(json.dumps(to_jsonable(result), ensure_ascii=False) + "\n")
        stderr().print(f"[red]error:[/red] audit chain broken at {escape(verdict.message)}")
        raise typer.Exit(EXIT_REFUSED)
    emit(cli, result)


class _NoStoredChain:
    """No stored audit chain (a read-only copy whose view was never created)."""

    def audit_links(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Nothing is stored."""
        return []

    def append_audit_links(self, links: object) -> None:
        """Nothing can be stored."""


def register(app: typer.Typer) -> None:
    """Add `audit export` and `audit verify`."""
    app.add_typer(audit_app, name="audit")
