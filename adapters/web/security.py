"""Dashboard safety at the HTTP edge: Host allow-list, Origin/Referer on POST, security headers.

- Host: a request whose Host header names none of the allowed hosts is refused (400). This stops
  DNS rebinding: a page on attacker.example whose name re-resolves to 127.0.0.1 reaches the
  server with `Host: attacker.example`, and gets nothing.
- Origin / Referer: a state-changing request (POST, PUT, PATCH, DELETE) that carries an Origin
  (or, without one, a Referer) from another origin than the one it was sent to is refused (403),
  on top of the per-session CSRF token. Requests with neither (curl, scripts) rely on the token.
- Headers on every response: a Content-Security-Policy with no inline script and
  frame-ancestors 'none', X-Frame-Options DENY, X-Content-Type-Options nosniff,
  Referrer-Policy same-origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

ALLOWED_HOSTS_VARIABLE = "FLIGHTLEDGER_ALLOWED_HOSTS"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Starlette's TestClient sends `Host: testserver`; `serve` never allows it (see served_hosts).
DEFAULT_ALLOWED_HOSTS = (*LOOPBACK_HOSTS, "testserver")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_ECHO = 80  # characters of a user-supplied reference echoed back on an error page

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}

_SECURITY_RAW = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]


def echo(text: str, limit: int = MAX_ECHO) -> str:
    """What an error page repeats of user input: at most `limit` characters, marked when cut."""
    return text if len(text) <= limit else text[:limit] + "…"


_LONG_WORD = re.compile(r"\S{" + str(MAX_ECHO + 1) + ",}")


def cap_echoes(sentence: str) -> str:
    """An error sentence with every overlong word (an echoed ref, path, value) cut to MAX_ECHO."""
    return _LONG_WORD.sub(lambda m: echo(m.group(0)), sentence)


def host_name(host_header: str) -> str:
    """The host name of a Host header or netloc, lower-case, without port or IPv6 brackets."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def parse_allowed_hosts(value: str) -> tuple[str, ...]:
    """FLIGHTLEDGER_ALLOWED_HOSTS: comma-separated host names ('*' = any host, no check)."""
    return tuple(host_name(part) for part in value.split(",") if part.strip())


def served_hosts(bind: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The hosts `serve --host BIND` answers: BIND itself, loopback names, then `extra`.

    A wildcard bind (0.0.0.0, ::) answers loopback names only until the operator names the
    public host(s) in FLIGHTLEDGER_ALLOWED_HOSTS (or the QBO redirect URI names it).
    """
    hosts: list[str] = []
    if bind not in ("0.0.0.0", "::", ""):
        hosts.append(host_name(bind))
    hosts.extend(LOOPBACK_HOSTS)
    hosts.extend(host_name(h) for h in extra if h)
    return tuple(dict.fromkeys(hosts))


def _same_origin(source: str, host_header: str) -> bool:
    parts = urlsplit(source)
    return bool(parts.netloc) and parts.netloc.lower() == host_header.strip().lower()


def install_security(app: FastAPI, allowed_hosts: Sequence[str]) -> None:
    """Check Host and Origin/Referer, and add the security headers to every response."""
    app.add_middleware(SecurityMiddleware, allowed_hosts=tuple(allowed_hosts))


class SecurityMiddleware:
    """Pure ASGI (no task and stream per request, as a BaseHTTPMiddleware has): the Host and
    Origin/Referer checks, and the security headers on every answer that passes through."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_name(h) for h in allowed_hosts)
        self.any_host = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                raw.extend(h for h in _SECURITY_RAW if h[0] not in present)  # as setdefault
                message = {**message, "headers": raw}
            await send(message)

        request = Request(scope)
        host_header = request.headers.get("host", "")
        if not self.any_host and host_name(host_header) not in self.allowed:
            log.warning("web_host_refused", host=echo(host_header))
            refusal = _refusal(
                request,
                f"This dashboard does not answer to the host {echo(host_header)!r}. "
                f"Open it by its own address, or add the name to {ALLOWED_HOSTS_VARIABLE}.",
                status_code=400,
            )
        elif request.method in UNSAFE_METHODS and not _origin_ok(request, host_header):
            log.warning("web_cross_origin_refused", path=request.url.path)
            refusal = _refusal(
                request,
                "This request came from another site (its Origin/Referer is not this "
                "dashboard) and was refused: use the dashboard's own pages.",
                status_code=403,
            )
        else:
            await self.app(scope, receive, with_headers)
            return
        await refusal(scope, receive, with_headers)


def _refusal(request: Request, sentence: str, *, status_code: int) -> Response:
    """The refusal as plain text, or as the API's JSON error envelope on API paths."""
    from adapters.api.errors import envelope, is_api_path

    if is_api_path(request.url.path):
        return envelope(status_code, sentence)
    return PlainTextResponse(sentence, status_code=status_code)


def _origin_ok(request: Request, host_header: str) -> bool:
    if request.url.path.startswith("/api/") and "cookie" not in request.headers:
        return True  # the API authenticates by Bearer key only: no ambient credential to forge
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and _same_origin(origin, host_header)
    referer = request.headers.get("referer")
    if referer is not None:
        return _same_origin(referer, host_header)
    return True  # no browser context: the CSRF token still has to match
