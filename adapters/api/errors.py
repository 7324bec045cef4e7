"""The API's one error shape: `{"error": {"code", "message", "fields": [{"field", "reason"}]}}`.

Every refusal under /api/ (and /healthz, /readyz, /metrics, /openapi.json) is this JSON, never
the dashboard's HTML page and never a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)

API_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics", "/openapi.json")
CODES = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """A refusal answered with the error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        fields: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.fields = [dict(f) for f in fields]
        self.headers = dict(headers or {})


def envelope(
    status: int,
    message: str,
    *,
    code: str | None = None,
    fields: Sequence[Mapping[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error response."""
    body = {
        "error": {
            "code": code or CODES.get(status, "error"),
            "message": message,
            "fields": [{"field": f["field"], "reason": f["reason"]} for f in fields],
        }
    }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def is_api_path(path: str) -> bool:
    """Whether a path belongs to the API (JSON errors) rather than the dashboard (HTML)."""
    return path.startswith(API_PREFIXES)


def _field_name(location: Sequence[Any]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


Handler = Callable[[Request, Any], Awaitable[Response] | Response]


def install_error_handlers(app: FastAPI) -> None:
    """JSON envelopes for API paths; the dashboard's own handlers keep serving its pages."""
    previous_http: Handler | None = app.exception_handlers.get(StarletteHTTPException)
    previous_validation: Handler | None = app.exception_handlers.get(RequestValidationError)
    previous_any: Handler | None = app.exception_handlers.get(Exception)

    async def delegate(handler: Handler | None, request: Request, exc: Any) -> Response:
        if handler is None:
            raise exc
        answer = handler(request, exc)
        if isinstance(answer, Response):
            return answer
        return await answer

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return envelope(
            exc.status, exc.message, code=exc.code, fields=exc.fields, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not is_api_path(request.url.path):
            return await delegate(previous_http, request, exc)
        message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such route: {request.method} {request.url.path}"
        return envelope(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if not is_api_path(request.url.path):
            return await delegate(previous_validation, request, exc)
        fields = [
            {"field": _field_name(e.get("loc", ())), "reason": str(e.get("msg", "is invalid"))}
            for e in exc.errors()
        ]
        return envelope(422, "the request is not valid", fields=fields)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        if not is_api_path(request.url.path):
            if previous_any is not None:
                return await delegate(previous_any, request, exc)
            return PlainTextResponse("Internal Server Error", status_code=500)
        log.error("api_request_crashed", path=request.url.path, error=type(exc).__name__)
        return envelope(500, f"internal error ({type(exc).__name__}); nothing was changed")
