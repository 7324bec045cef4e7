"""Read-only pages: the dashboard, one event's page and its history as JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from adapters.jsonable import to_jsonable
from adapters.web.access import Access
from adapters.web.auth import ADMIN, VIEW, User
from adapters.web.card import card_context
from adapters.web.config import ChecklistProvider, WebConfig
from adapters.web.pages import Pages
from adapters.web.plain import (
    AUTO_INVOICE_OFF,
    kind_words,
    reason_words,
    status_words,
    web_checklist,
)
from domain.financial_event import NotFound, Status
from domain.ports import ReasonCode
from domain.reasons import describe_missing, fix_for
from domain.retry import FAILED_GROUP
from projections.view import EventQuery, EventRow, FinancialEventView

log = structlog.get_logger(__name__)

STATUS_ORDER = [s.value for s in Status]
REASON_CODES = [r.value for r in ReasonCode]
EVENTS_LIMIT = 500
PAGE_SIZE = 50  # rows a page of the events tab


def register(app: FastAPI, cfg: WebConfig, access: Access, pages: Pages) -> None:
    """Add GET /, GET /events/{ref} and GET /events/{ref}/history.json."""
    ledger = cfg.ledger

    @app.get("/", response_class=HTMLResponse)
    def dashboard(
        request: Request,
        status: str = "",
        reason: str = "",
        student: str = "",
        q: str = "",
        since: str = "",
        until: str = "",
        before: str = "",
        user: User = Depends(access.requires(VIEW)),
    ) -> Response:
        cfg.refresh()
        school = user.school
        filters, problems = _filters(status, reason, student, q, since, until)
        cursor = int(before) if before.isdigit() else None
        counts = cfg.counts(school)
        groups = [
            {
                "reason_code": g.reason_code,
                "words": reason_words(g.reason_code),
                "count": g.count,
                "example": g.example,
                "fix": fix_for(g.reason_code, g.missing),
                "missing": [describe_missing(k) for k in g.missing],
            }
            for g in cfg.view.reason_groups(school)
        ]
        failed_count = counts.get(Status.FAILED, 0) + counts.get(Status.UNCERTAIN, 0)
        query = EventQuery(
            statuses=(filters["status"],) if filters["status"] else (),
            reason_code=filters["reason"] or None,
            student_id=filters["student"] or None,
            search=filters["q"] or None,
            since=_day(filters["since"]),
            until=_day(filters["until"], next_day=True),
            before=cursor,
            limit=PAGE_SIZE + 1,
        )
        found = cfg.view.page(school, query)
        rows, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
        auto_invoice = ledger.settings(school).auto_invoice
        names = _names(cfg.view, school, rows)
        card = card_context(cfg, request, school)
        listed = _checklist(cfg.checklist, school)
        checklist = None if listed is None else web_checklist(listed, admin=user.can(ADMIN))
        kept = {k: v for k, v in filters.items() if v}
        return pages.render(
            request,
            "dashboard.html",
            {
                "school": school,
                "counts": [(s, counts.get(s, 0)) for s in STATUS_ORDER],
                "total": sum(counts.values()),
                "groups": groups,
                "failed_count": failed_count,
                "failed_group": FAILED_GROUP,
                "rows": [_row_words(r, auto_invoice, names=names) for r in rows],
                "filters": filters,
                "filtering": bool(kept),
                "problems": problems,
                "older": urlencode({**kept, "before": rows[-1].position}) if more else "",
                "newest": urlencode(kept) if cursor is not None else None,
                "statuses": [(s, status_words(s)) for s in STATUS_ORDER],
                "reasons": [(r, reason_words(r)) for r in REASON_CODES],
                **card,
                "checklist": checklist,
                "limit": PAGE_SIZE,
                "auto_invoice": auto_invoice,
            },
        )

    @app.get("/events/{ref}", response_class=HTMLResponse)
    def event_page(
        request: Request, ref: str, user: User = Depends(access.requires(VIEW))
    ) -> Response:
        try:
            event = ledger.find(user.school, ref)
            history = ledger.history(user.school, str(event.id))
        except NotFound:
            raise HTTPException(404, f"No financial event {ref} in your school.") from None
        return pages.render(
            request,
            "event.html",
            {
                "event": event,
                "history": history,
                "fix": fix_for(str(event.reason_code), event.missing) if event.reason_code else "",
                "pending": correction_words(event.pending_corrections),
            },
        )

    @app.get("/events/{ref}/history.json")
    def event_history_json(ref: str, user: User = Depends(access.requires(VIEW))) -> Response:
        try:
            entries = ledger.history(user.school, ref)
        except NotFound:
            raise HTTPException(404, f"No financial event {ref} in your school.") from None
        return JSONResponse(
            [
                {
                    "position": e.position,
                    "at": e.at.isoformat(),
                    "type": e.type,
                    "actor": e.actor,
                    "data": to_jsonable(e.data),
                    "log_position": e.log_position,
                }
                for e in entries
            ]
        )


def _filters(
    status: str, reason: str, student: str, q: str, since: str, until: str
) -> tuple[dict[str, str], list[str]]:
    """The events tab's filters (unknown values dropped, each refusal named)."""
    problems: list[str] = []
    dates: dict[str, str] = {}
    for name, label, given in (("since", "From", since), ("until", "To", until)):
        value = given.strip()
        if value:
            try:
                date.fromisoformat(value)
            except ValueError:
                problems.append(f"{label}: use a date like 2026-11-20")
                value = ""
        dates[name] = value
    return {
        "status": status if status in STATUS_ORDER else "",
        "reason": reason if reason in REASON_CODES else "",
        "student": student.strip()[:64],
        "q": q.strip()[:64],
        **dates,
    }, problems


def _day(value: str, *, next_day: bool = False) -> datetime | None:
    """The start of that UTC day (or of the next one: an inclusive 'to' date)."""
    if not value:
        return None
    start = datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)
    return start + timedelta(days=1) if next_day else start


def _names(view: FinancialEventView, school: str, rows: list[EventRow]) -> dict[str, str]:
    """Student names of one page of rows, from the view's students table (one read)."""
    try:
        return view.student_names(school, {row.student_id for row in rows})
    except Exception:  # a name is a courtesy: the id is still shown
        log.warning("web_student_names_failed", school=school)
        return {}


def _row_words(row: EventRow, auto_invoice: bool, *, names: dict[str, str]) -> dict[str, Any]:
    """One row of the events table, with the words staff use beside the codes."""
    note = row.reason
    if row.status == Status.PENDING and not auto_invoice:
        note = AUTO_INVOICE_OFF
    return {
        "row": row,
        "id": row.id,
        "reference": row.reference,
        "kind": kind_words(row.kind),
        "student_id": row.student_id,
        "student_name": names.get(row.student_id, ""),
        "amount": row.amount,
        "qbo_amount": row.qbo_amount,
        "correction": row.corrections,
        "status": row.status,
        "status_words": status_words(row.status),
        "reason_code": row.reason_code,
        "reason_words": reason_words(row.reason_code),
        "note": note,
        "attempts": row.attempts,
        # a DocNumber exists in QuickBooks only once it holds the invoice
        "doc_number": row.doc_number if row.status == Status.SYNCED else None,
        "qbo_id": row.qbo_id if row.status == Status.SYNCED else None,
        "updated_at": row.updated_at,
        "retryable": row.status in (Status.ACTION_REQUIRED, Status.FAILED, Status.UNCERTAIN),
        "dismissable": row.status not in (Status.SYNCED, Status.DISMISSED, Status.CANCELLED),
    }


def _checklist(provider: ChecklistProvider | None, school: str) -> list[dict[str, Any]] | None:
    if provider is None:
        return None
    try:
        return [dict(item) for item in provider(school)]
    except Exception as exc:  # an unavailable checklist never breaks the dashboard
        log.warning("web_checklist_failed", school=school, error=type(exc).__name__)
        return None


def correction_words(keys: list[str]) -> list[str]:
    """FinancialEvent.pending_corrections ("v2", "cancel") in the view's words (CLI.md events)."""
    return ["cancellation" if key == "cancel" else "amendment" for key in keys]
