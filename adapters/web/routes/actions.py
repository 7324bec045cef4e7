"""Operator actions on financial events: Retry Failed by group and dismiss one event."""

from __future__ import annotations

from urllib.parse import parse_qs

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from adapters.web.access import Access
from adapters.web.auth import RETRY, User
from adapters.web.config import WebConfig
from adapters.web.session import flash, form
from domain.financial_event import NotFound, TransitionRefused
from domain.retry import FAILED_GROUP, GROUPS, UnknownEvent
from services import retry as use_case
from services.retry import NoteRequired, RetryOutcome

log = structlog.get_logger(__name__)

SELECTION = "selection"  # Retry Failed for the events ticked in the table (field `id`, repeated)
MAX_PICKED = 500  # events one press may name (the table shows at most a page)


async def form_lists(request: Request) -> dict[str, list[str]]:
    """Every value of each field (checkboxes repeat `id`); `form` already checked the CSRF."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return parse_qs(body, keep_blank_values=False)


def register(app: FastAPI, cfg: WebConfig, access: Access) -> None:
    """Add POST /retry-failed and POST /events/{ref}/dismiss."""
    ledger = cfg.ledger

    @app.post("/retry-failed")
    def retry_failed(
        request: Request,
        fields: dict[str, str] = Depends(form),
        picked: dict[str, list[str]] = Depends(form_lists),
        user: User = Depends(access.requires(RETRY)),
    ) -> Response:
        cfg.refresh()
        group = fields.get("reason", "")
        ids = picked.get("id", [])
        if group == SELECTION:
            if not ids:
                flash(request, "bad", "Retry Failed: no event was selected, nothing was retried.")
                return RedirectResponse("/", 303)
            return _retry_ids(request, user, ids, label="selected events")
        if group not in GROUPS:
            raise HTTPException(400, f"Unknown group {group!r}: nothing was retried.")
        return _press(request, user, label=group, reason=group)

    def _retry_ids(request: Request, user: User, ids: list[str], *, label: str) -> Response:
        try:
            return _press(request, user, label=label, ids=ids[:MAX_PICKED])
        except UnknownEvent as exc:
            flash(request, "bad", f"Nothing was retried: {exc}")
            return RedirectResponse("/", 303)

    def _press(
        request: Request,
        user: User,
        *,
        label: str,
        reason: str | None = None,
        ids: list[str] | None = None,
    ) -> Response:
        outcome = use_case.retry_failed(
            ledger,
            user.school,
            operator=user.name,
            reason=reason,
            ids=ids or (),
            rows=cfg.view,
            lists=cfg.qbo_lists,
        )
        log.info(
            "web_retry_failed_pressed",
            school=user.school,
            operator=user.name,
            group=label,
            requeued=outcome.requeued,
            skipped=outcome.skipped,
            blocked=len(outcome.blocked),
        )
        kind, text, details = _retry_summary(label, outcome)
        flash(request, kind, text, details)
        cfg.refresh()
        return RedirectResponse("/", 303)

    @app.post("/events/{ref}/retry")
    def retry_one(
        request: Request,
        ref: str,
        fields: dict[str, str] = Depends(form),
        user: User = Depends(access.requires(RETRY)),
    ) -> Response:
        cfg.refresh()
        return _retry_ids(request, user, [ref], label=ref)

    @app.post("/events/{ref}/dismiss")
    def dismiss(
        request: Request,
        ref: str,
        fields: dict[str, str] = Depends(form),
        user: User = Depends(access.requires(RETRY)),
    ) -> Response:
        note = fields.get("note", "").strip()
        try:
            event = use_case.dismiss(ledger, user.school, ref, operator=user.name, note=note)
        except NotFound:
            raise HTTPException(404, f"No financial event {ref} in your school.") from None
        except NoteRequired as exc:
            flash(request, "bad", f"Not dismissed: note: {exc}")
            return RedirectResponse(f"/events/{ref}", 303)
        except TransitionRefused as exc:
            flash(request, "bad", f"Not dismissed: {exc}")
            return RedirectResponse(f"/events/{ref}", 303)
        log.info("web_event_dismissed", school=user.school, operator=user.name, ref=ref)
        flash(request, "ok", f"{event.reference} dismissed: it will not be sent.")
        cfg.refresh()
        return RedirectResponse(f"/events/{ref}", 303)


def _retry_summary(group: str, result: RetryOutcome) -> tuple[str, str, list[str]]:
    label = "failed events" if group == FAILED_GROUP else group
    text = f"Retry Failed ({label}): {result.requeued} requeued, {result.skipped} skipped"
    details = [f"blocked {b['count']}: {b['why']}" for b in result.blocked]
    if result.blocked:
        text += f", {sum(b['count'] for b in result.blocked)} blocked"
    kind = "bad" if result.blocked and not result.requeued else "ok"
    return kind, text, details
