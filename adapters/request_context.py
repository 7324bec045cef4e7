"""One HTTP request's log context: its request id, then its school and actor once known.

Every request to `serve` (the dashboard and the API under /api/v1) binds `request_id` in
structlog's contextvars for its whole life, echoes it as the X-Request-ID response header and
clears the context after; the permission dependencies (`adapters/api/app.py` KeyAuth,
`adapters/web/access.py` Access) add `school` and `actor` (the API key's name, the signed-in
user's name) with `bind_actor`. `workers/logging.py`'s `merge_contextvars` puts them on every
line logged meanwhile.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import structlog
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_RAW = REQUEST_ID_HEADER.lower().encode("latin-1")
# What an incoming id may be: up to 128 letters, digits and . _ : - (no spaces, quotes or
# control characters that could forge a log line or a header); anything else gets a fresh id.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(headers: Headers) -> str:
    """The caller's X-Request-ID when it is sane, else a new random one (32 hex digits)."""
    incoming = headers.get(REQUEST_ID_HEADER, "")
    if SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def bind_actor(school: str, actor: str) -> None:
    """Add who is asking to the current request's log context."""
    structlog.contextvars.bind_contextvars(school=school, actor=actor)


class RequestContextMiddleware:
    """Pure ASGI: bind `request_id` around the whole request, echo it, clear the context after.

    It wraps Starlette's own error middleware too (see `install_request_context`), so the line
    an unexpected error logs and its 500 answer carry the id as well.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [h for h in message.get("headers", []) if h[0].lower() != _HEADER_RAW]
                raw.append((_HEADER_RAW, request_id.encode("latin-1")))  # replaces any other
                message = {**message, "headers": raw}
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()


def install_request_context(app: FastAPI) -> None:
    """Wrap the app's whole middleware stack (Starlette's error middleware included) once."""
    if getattr(app.state, "request_context", False):
        return
    app.state.request_context = True
    build: Callable[[], ASGIApp] = app.build_middleware_stack

    def build_with_context() -> ASGIApp:
        return RequestContextMiddleware(build())

    # An instance attribute: Starlette builds the stack lazily through self.build_middleware_stack
    setattr(app, "build_middleware_stack", build_with_context)  # noqa: B010
