"""The API's one error shape: `{"error": {"code", "message", "fields": [{"field", "reason"}]}}`.

Every refusal under /api/ (and /healthz, /readyz, /metrics, /openapi.json) is this JSON, never
the dashboard's HTML page and never a traceback. A use case's refusal (a domain or services/
error) gets its status, message and fields in one place, `service_error`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, assert_never

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.webhooks import UnsafeReceiver
from domain.financial_event import NotFound, TransitionRefused
from domain.mapping_input import InvalidMappingInput
from domain.records import RecordError, UnknownRecord
from domain.retry import SelectionError, UnknownEvent
from services.mappings import MappingRefused, NothingToSet, ReferenceRefused
from services.records import RecordedDifferently
from services.retry import NoteRequired

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


ServiceError = (
    RecordError
    | RecordedDifferently
    | SelectionError
    | NoteRequired
    | NotFound
    | TransitionRefused
    | MappingRefused
    | ReferenceRefused
    | NothingToSet
    | InvalidMappingInput
    | UnsafeReceiver
)


def service_error(exc: ServiceError, *, field: str = "body", ref: str = "") -> ApiError:
    """The envelope of a use case's refusal: 404 for what the school does not have, 409 for a
    conflict with what is recorded, 422 naming the field with the CLI's reason. `field` names
    the input of an error that carries only a sentence (a mapping input, a webhook URL), `ref`
    the financial event a NotFound was about."""
    match exc:
        case UnknownRecord():
            return ApiError(404, f"{exc.field}: {exc.reason}", fields=[_f(exc.field, exc.reason)])
        case RecordError():
            return ApiError(422, f"{exc.field}: {exc.reason}", fields=[_f(exc.field, exc.reason)])
        case RecordedDifferently():
            return ApiError(409, str(exc), fields=[_f(exc.field, "already recorded, differently")])
        case UnknownEvent():
            return ApiError(404, str(exc), fields=[_f(exc.field, str(exc))])
        case SelectionError():
            return ApiError(422, f"{exc.field}: {exc}", fields=[_f(exc.field, str(exc))])
        case NoteRequired():
            return ApiError(422, f"note: {exc}", fields=[_f("note", str(exc))])
        case NotFound():
            return ApiError(404, f"no financial event {ref!r}")
        case TransitionRefused():
            return ApiError(409, str(exc))
        case MappingRefused():
            return ApiError(422, str(exc), fields=[_f(exc.part, exc.reason)])
        case ReferenceRefused():
            why = exc.sentence(exc.reference.part)
            return ApiError(422, why, fields=[_f(exc.reference.part, why.split(": ", 1)[-1])])
        case NothingToSet():
            reason = "give at least one of term, memo, income_account"
            return ApiError(422, f"{field}: {reason}", fields=[_f(field, reason)])
        case InvalidMappingInput() | UnsafeReceiver():  # "<field>: <reason>" sentences
            return ApiError(422, str(exc), fields=[_f(field, str(exc).split(": ", 1)[-1])])
        case _:
            assert_never(exc)


def _f(name: str, reason: str) -> dict[str, str]:
    return {"field": name, "reason": reason}


def api_response(exc: ApiError) -> JSONResponse:
    """The error response of a refusal."""
    return envelope(exc.status, exc.message, code=exc.code, fields=exc.fields, headers=exc.headers)


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
        return api_response(exc)

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
