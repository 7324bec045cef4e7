"""Read-only pages: the dashboard, one event's page and its history as JSON."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from adapters.jsonable import to_jsonable
from adapters.web.access import Access
from adapters.web.auth import ADMIN, VIEW, User
from adapters.web.card import card_context
from adapters.web.config import ChecklistProvider, WebConfig
from adapters.web.pages import Pages
from adapters.web.plain import web_checklist
from domain.application import NotFound
from domain.financial_event import Status
from domain.ports import ReasonCode
from domain.reasons import describe_missing, fix_for
from domain.retry import FAILED_GROUP

log = structlog.get_logger(__name__)

STATUS_ORDER = [s.value for s in Status]
REASON_CODES = [r.value for r in ReasonCode]
EVENTS_LIMIT = 500


def register(app: FastAPI, cfg: WebConfig, access: Access, pages: Pages) -> None:
    """Add GET /, GET /events/{ref} and GET /events/{ref}/history.json."""
    ledger = cfg.ledger

    @app.get("/", response_class=HTMLResponse)
    def dashboard(
        request: Request,
        status: str = "",
        reason: str = "",
        user: User = Depends(access.requires(VIEW)),
    ) -> Response:
        cfg.refresh()
        school = user.school
        status_filter = status if status in STATUS_ORDER else None
        reason_filter = reason if reason in REASON_CODES else None
        counts = cfg.view.counts(school)
        groups = [
            {
                "reason_code": g.reason_code,
                "count": g.count,
                "example": g.example,
                "fix": fix_for(g.reason_code, g.missing),
                "missing": [describe_missing(k) for k in g.missing],
            }
            for g in cfg.view.reason_groups(school)
        ]
        failed_count = counts.get(Status.FAILED, 0) + counts.get(Status.UNCERTAIN, 0)
        rows = cfg.view.list(
            school, status=status_filter, reason_code=reason_filter, limit=EVENTS_LIMIT
        )
        card = card_context(cfg, request, school)
        listed = _checklist(cfg.checklist, school)
        checklist = None if listed is None else web_checklist(listed, admin=user.can(ADMIN))
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
                "rows": rows,
                "status_filter": status_filter or "",
                "reason_filter": reason_filter or "",
                "statuses": STATUS_ORDER,
                "reasons": REASON_CODES,
                **card,
                "checklist": checklist,
                "limit": EVENTS_LIMIT,
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


def _checklist(provider: ChecklistProvider | None, school: str) -> list[dict[str, Any]] | None:
    if provider is None:
        return None
    try:
        return [dict(item) for item in provider(school)]
    except Exception as exc:  # an unavailable checklist never breaks the dashboard
        log.warning("web_checklist_failed", school=school, error=type(exc).__name__)
        return None
