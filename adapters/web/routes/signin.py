"""Sign-in and sign-out routes."""

from __future__ import annotations

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adapters.web.config import WebConfig
from adapters.web.pages import Pages
from adapters.web.session import form, start_session

log = structlog.get_logger(__name__)


def register(app: FastAPI, cfg: WebConfig, pages: Pages) -> None:
    """Add GET/POST /login and POST /logout."""

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> Response:
        if cfg.local_user is not None:
            return RedirectResponse("/", 303)
        return pages.render(request, "login.html", {"next": safe_next(next), "error": None})

    @app.post("/login", response_class=HTMLResponse)
    def login(request: Request, fields: dict[str, str] = Depends(form)) -> Response:
        if cfg.local_user is not None:
            return RedirectResponse("/", 303)
        assert cfg.users is not None
        user = cfg.users.authenticate(fields.get("token", ""))
        target = safe_next(fields.get("next", "/"))
        if user is None:
            log.info("web_sign_in_refused")
            return pages.render(
                request,
                "login.html",
                {"next": target, "error": "That sign-in token is not recognised."},
                status_code=401,
            )
        start_session(request, user=user.name)
        log.info("web_signed_in", user=user.name, school=user.school)
        return RedirectResponse(target, 303)

    @app.post("/logout")
    def logout(request: Request, fields: dict[str, str] = Depends(form)) -> Response:
        start_session(request)
        return RedirectResponse("/login" if cfg.users is not None else "/", 303)


def safe_next(target: str) -> str:
    """Only same-site absolute paths (no scheme, no //host)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
