"""Sign-in and sign-out routes."""

from __future__ import annotations

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adapters.request_context import bind_actor
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
        target = safe_next(fields.get("next", "/"))
        client = request.client.host if request.client else "unknown"
        wait = cfg.throttle.retry_after(client)
        if wait:
            log.warning("web_sign_in_throttled", client=client, retry_after=wait)
            response = pages.render(
                request,
                "login.html",
                {
                    "next": target,
                    "error": f"Too many wrong sign-in tokens: try again in {wait} seconds.",
                },
                status_code=429,
            )
            response.headers["retry-after"] = str(wait)
            return response
        user = cfg.users.authenticate(fields.get("token", ""))
        if user is None:
            cfg.throttle.failed(client)
            log.info("web_sign_in_refused", client=client)
            return pages.render(
                request,
                "login.html",
                {"next": target, "error": "That sign-in token is not recognised."},
                status_code=401,
            )
        cfg.throttle.succeeded(client)
        cfg.sessions.end(request.state.session.get("sid"))
        sid = cfg.sessions.start(user.name, cfg.users.digest_of(user.name) or "")
        start_session(request, user=user.name, sid=sid)
        bind_actor(user.school, user.name)
        log.info("web_signed_in", user=user.name, school=user.school)
        return RedirectResponse(target, 303)

    @app.post("/logout")
    def logout(request: Request, fields: dict[str, str] = Depends(form)) -> Response:
        cfg.sessions.end(request.state.session.get("sid"))  # the old cookie opens nothing now
        log.info("web_signed_out", user=request.state.session.get("user"))
        start_session(request)
        return RedirectResponse("/login" if cfg.users is not None else "/", 303)


def safe_next(target: str) -> str:
    """Only same-site absolute paths (no scheme, no //host)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
