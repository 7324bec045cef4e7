"""Rendering: Jinja2 templates with the common page context, message pages and error pages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.jsonable import as_text
from adapters.web.access import Access, LoginRequired
from adapters.web.auth import ADMIN, RETRY, VIEW
from adapters.web.plain import attention_banner, kind_words, reason_words, status_words
from adapters.web.security import cap_echoes
from adapters.web.session import take_flash
from domain.financial_event import Status

log = structlog.get_logger(__name__)

# what the banner counts: events that wait for a person (Retry Failed or a fix)
ATTENTION_STATUSES = (Status.ACTION_REQUIRED, Status.FAILED, Status.UNCERTAIN)

TEMPLATES_DIR = Path(__file__).parent / "templates"


def when(value: Any) -> str:
    """A time as office staff read it: '2027-03-02 22:05 UTC' (ISO text or datetime)."""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


class Pages:
    """Renders the dashboard's templates with the user, CSRF token and flash message."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
        self.templates.env.filters["plain"] = as_text
        self.templates.env.filters["when"] = when
        self.templates.env.filters["status_words"] = status_words
        self.templates.env.filters["reason_words"] = reason_words
        self.templates.env.filters["kind_words"] = kind_words

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        status_code: int = 200,
    ) -> HTMLResponse:
        """The template `name` with the common page context under `context`."""
        user = self.access.current_user(request)
        base = {
            "attention": self.attention(user.school) if user is not None else "",
            "user": user,
            "csrf": request.state.session.get("csrf", ""),
            "flash": take_flash(request),
            "VIEW": VIEW,
            "RETRY": RETRY,
            "ADMIN": ADMIN,
        }
        return self.templates.TemplateResponse(
            request, name, {**base, **context}, status_code=status_code
        )

    def attention(self, school: str) -> str:
        """The banner shown on every page while anything waits for a person (from the view's
        counters per status and kind: no rows are read)."""
        try:
            by_kind = self.access.cfg.view.counts_by_kind(school)
            waiting = {k: n for (s, k), n in by_kind.items() if s in ATTENTION_STATUSES}
            total = sum(waiting.values())
            if not total:
                return ""
            return attention_banner(total, waiting.get("flight-ended", 0))
        except Exception:  # a banner never breaks a page
            log.warning("web_attention_banner_failed", school=school)
            return ""

    def message_page(
        self, request: Request, title: str, text: str, *, status_code: int = 200, tone: str = "info"
    ) -> HTMLResponse:
        """A page that states one message (an outcome, a refusal, an error)."""
        return self.render(
            request,
            "message.html",
            {"title": title, "text": text, "tone": tone},
            status_code=status_code,
        )


def install_error_handlers(app: FastAPI, pages: Pages) -> None:
    """Answer errors with a sentence: a sign-in redirect, a message page or JSON."""

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method == "GET":
            return RedirectResponse("/login?" + urlencode({"next": request.url.path}), 303)
        return pages.message_page(
            request, "Sign in required", "Sign in to use the dashboard.", status_code=401
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        title = {403: "Not allowed", 404: "Not found"}.get(exc.status_code, "Refused")
        text = cap_echoes(str(exc.detail)) if exc.detail else title  # a 5,000-char ref: cut
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"error": text}, status_code=exc.status_code)
        return pages.message_page(request, title, text, status_code=exc.status_code, tone="bad")
