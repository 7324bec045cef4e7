"""Auditors in the browser: download one school's `audit export` and run the tamper check."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from adapters.web.access import Access
from adapters.web.auth import VIEW, User
from adapters.web.config import WebConfig
from adapters.web.pages import Pages
from adapters.web.session import flash, form

log = structlog.get_logger(__name__)

FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
UNAVAILABLE = "The audit export is not available on this server."


def _day(value: str, label: str, *, end: bool = False) -> datetime | None:
    """A YYYY-MM-DD date as the start of that UTC day (the end of it for a 'to' date)."""
    if not value.strip():
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise HTTPException(400, f"{label}: use a date like 2026-11-20") from None
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start + timedelta(days=1) - timedelta(microseconds=1) if end else start


def register(app: FastAPI, cfg: WebConfig, access: Access, pages: Pages) -> None:
    """Add GET /audit, GET /audit/export and POST /audit/verify (billing:view)."""
    viewer = access.requires(VIEW)

    @app.get("/audit", response_class=HTMLResponse)
    def audit_page(request: Request, user: User = Depends(viewer)) -> Response:
        verdict = request.state.session.pop("audit_verdict", None)
        if verdict is not None:
            request.state.session_dirty = True
        return pages.render(
            request,
            "audit.html",
            {
                "school": user.school,
                "available": cfg.audit_export is not None,
                "can_verify": cfg.audit_verify is not None,
                "verdict": verdict,
            },
        )

    @app.get("/audit/export")
    def audit_export(
        format: str = "jsonl",
        since: str = "",
        until: str = "",
        user: User = Depends(viewer),
    ) -> Response:
        if cfg.audit_export is None:
            raise HTTPException(503, UNAVAILABLE)
        if format not in FORMATS:
            raise HTTPException(400, f"Format: unknown format {format!r}; valid: jsonl, csv")
        start, end = _day(since, "From"), _day(until, "To", end=True)
        log.info("web_audit_exported", school=user.school, user=user.name, format=format)
        lines = cfg.audit_export(user.school, start, end, format)
        name = f"flightledger-audit-{user.school}-{since or 'start'}-{until or 'now'}.{format}"
        return StreamingResponse(
            iter(lines),
            media_type=FORMATS[format],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.post("/audit/verify")
    def audit_verify(
        request: Request, fields: dict[str, str] = Depends(form), user: User = Depends(viewer)
    ) -> Response:
        if cfg.audit_verify is None:
            raise HTTPException(503, UNAVAILABLE)
        verdict = dict(cfg.audit_verify())
        log.info("web_audit_verified", user=user.name, ok=verdict.get("ok"))
        request.state.session["audit_verdict"] = {
            "ok": bool(verdict.get("ok")),
            "events": verdict.get("events"),
            "message": str(verdict.get("message") or ""),
        }
        request.state.session_dirty = True
        if not verdict.get("ok"):
            flash(
                request,
                "bad",
                f"Tamper check failed: the log was changed at {verdict.get('message')}",
            )
        return RedirectResponse("/audit", 303)
