"""The signed session cookie and what lives in it: the CSRF token and the flash message."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.web.access import Forbidden
from adapters.web.auth import SessionSigner, new_csrf_token

SESSION_COOKIE = "flightledger_session"


def install_session(app: FastAPI, signer: SessionSigner, *, secure_cookies: bool) -> None:
    """Load the signed session into `request.state.session` and write it back when dirty."""

    async def session_middleware(request: Request, call_next: Any) -> Response:
        raw = request.cookies.get(SESSION_COOKIE)
        session = signer.unsign(raw) if raw else None
        fresh = session is None or "csrf" not in session
        if session is None or fresh:
            session = {"csrf": new_csrf_token()}
        request.state.session = session
        request.state.session_dirty = fresh
        response: Response = await call_next(request)
        if request.state.session_dirty:
            response.set_cookie(
                SESSION_COOKIE,
                signer.sign(request.state.session),
                httponly=True,
                samesite="lax",  # Lax: QuickBooks' redirect back (a top-level GET) keeps it
                secure=secure_cookies or request.url.scheme == "https",
                max_age=signer.max_age_seconds,
            )
        return response

    app.add_middleware(ApiSkipsSession, pages=session_middleware)


class ApiSkipsSession:
    """Pure ASGI: an /api/ request (Bearer keys only: no session, no cookie) gets an empty
    session and goes straight on; the dashboard's pages go through `pages` (which loads the
    signed session and writes it back when dirty)."""

    def __init__(self, app: ASGIApp, pages: Callable[[Request, Any], Awaitable[Response]]) -> None:
        self.app = app
        self.pages = BaseHTTPMiddleware(app, dispatch=pages)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith("/api/"):
            state = scope.setdefault("state", {})
            state["session"], state["session_dirty"] = {}, False
            await self.app(scope, receive, send)
            return
        await self.pages(scope, receive, send)


async def form(request: Request) -> dict[str, str]:
    """The urlencoded form body, after the per-session CSRF check."""
    body = (await request.body()).decode("utf-8", errors="replace")
    fields = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
    sent = fields.get("csrf") or request.headers.get("x-csrf-token", "")
    expected = str(request.state.session.get("csrf", ""))
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden(
            "This form did not come from this dashboard or has expired (CSRF check failed): "
            "reload the page and try again."
        )
    return fields


def flash(request: Request, kind: str, text: str, details: Sequence[str] = ()) -> None:
    """Keep a message in the session for the next page rendered."""
    request.state.session["flash"] = {"kind": kind, "text": text, "details": list(details)}
    request.state.session_dirty = True


def take_flash(request: Request) -> dict[str, Any] | None:
    """Remove and return the pending flash message, if any."""
    found = request.state.session.pop("flash", None)
    if found is not None:
        request.state.session_dirty = True
    return found if isinstance(found, dict) else None


def start_session(request: Request, **values: str) -> None:
    """Replace the session with a fresh CSRF token plus `values` (sign-in, sign-out)."""
    request.state.session = {"csrf": new_csrf_token(), **values}
    request.state.session_dirty = True
