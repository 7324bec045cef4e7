"""The /api/v1 routes (API.md), installed on the dashboard's FastAPI app by `serve`.

Every route calls the same use cases as the CLI and the dashboard: the ledger's commands,
domain/records.py's validation, domain/retry.py's selection, domain/mappings.py's rows. A key
(`Authorization: Bearer flk....`) belongs to one school; anything of another school is 404.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters import metrics
from adapters.api import models
from adapters.api.errors import ApiError, install_error_handlers, service_error
from adapters.api.limits import DEFAULT_BODY_LIMIT, BodyLimit, RateLimiter, retry_after_header
from adapters.api.schemas import (
    BATCH,
    FLIGHT_AMENDMENT,
    FLIGHT_CANCELLATION,
    FLIGHT_ENDED,
    INVOICE_REQUESTED,
    PAYMENT_RECEIVED,
    PAYMENT_REFUNDED,
    request_body,
)
from adapters.jsonable import to_jsonable
from adapters.request_context import bind_actor, install_request_context
from adapters.webhooks import (
    SecretStore,
    UnsafeReceiver,
    check_receiver,
    new_secret,
    outbox,
    secret_name,
)
from domain import mapping_input
from domain.api_keys import RECORDS_WRITE, ApiKey
from domain.application import FlightLedger
from domain.financial_event import NotFound, TransitionRefused
from domain.mappings import mapping_rows
from domain.ports import ReasonCode
from domain.qbo_lists import QboLists, QboListsPort
from domain.reasons import fix_for
from domain.records import (
    CORRECTION_PARSERS,
    NOT_JSON,
    PARSERS,
    Correction,
    Record,
    RecordError,
    RecordKind,
    read_json_document,
)
from domain.retry import SelectionError
from domain.webhooks import EVENT_TYPES
from projections.financial_events import STATUSES
from projections.view import FinancialEventView, row_json
from services import mappings as mappings_use_case
from services import records as records_use_case
from services import retry as use_case
from services.connection import ConnectionServicePort, check_document, connection_status
from services.retry import NoteRequired

log = structlog.get_logger(__name__)

VIEW = "billing:view"
RETRY = "billing:retry"
ADMIN = "billing:admin"
MAX_BATCH = 1000
MAX_PAGE = 500
DEFAULT_READY_LAG = 1000
PERMISSION_WORDS = {
    VIEW: "read billing",
    RETRY: "retry or dismiss billing events",
    ADMIN: "change mappings, defaults and webhooks",
    RECORDS_WRITE: "record flights, invoice requests and payments",
}
MAPPING_KINDS = {"charge": "charge", "student": "student", "payment_type": "payment_type"}
MAPPING_KINDS["payment-type"] = "payment_type"
REASON_VALUES: tuple[str, ...] = tuple(r.value for r in ReasonCode)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": models.ErrorOut, "description": text}
    for code, text in {
        400: "Malformed JSON",
        401: "No key or an unknown key",
        403: "The key lacks the permission",
        404: "Not found (or another school's)",
        413: "Body too large",
        422: "Validation failed (fields name each bad field)",
        429: "Too many requests (see Retry-After)",
    }.items()
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": models.ErrorOut, "description": "Conflict"}
}


@dataclass
class ApiConfig:
    """What the API needs, passed in by the composition root."""

    ledger: FlightLedger
    view: FinancialEventView
    refresh_view: Callable[[], Any] | None = None
    connections: ConnectionServicePort | None = None
    checklist: Callable[[str], Sequence[dict[str, Any]]] | None = None
    rate: RateLimiter = field(default_factory=RateLimiter)
    body_limit: int = DEFAULT_BODY_LIMIT
    ready_lag: int = DEFAULT_READY_LAG
    metrics: Callable[[], tuple[bytes, str]] | None = None  # (body, content type)
    worker_unhealthy: Callable[[], str | None] | None = None  # latest heartbeat's error, if any
    qbo_lists: QboListsPort | None = None  # mapped ids are checked against the cached lists
    webhook_secrets: SecretStore | None = None  # the vault; no webhooks without it
    allow_private_webhooks: bool = False
    extra_routes: list[Callable[[APIRouter, ApiConfig], None]] = field(default_factory=list)
    auth: Any = None  # set by install_api: the permission-dependency factory

    def refresh(self) -> None:
        """Bring the view up to date before a read."""
        if self.refresh_view is not None:
            self.refresh_view()


_bearer = HTTPBearer(auto_error=False, description="An API key: `flightledger keys create`")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
T = TypeVar("T")


class KeyAuth:
    """The key of a request, its rate budget and its permissions."""

    def __init__(self, cfg: ApiConfig) -> None:
        self.cfg = cfg

    def requires(self, permission: str) -> Callable[..., Awaitable[ApiKey]]:
        """A dependency: the request's key, refused 401/429/403 as API.md says; the key's school
        and name (as `actor`) join the request's log context."""

        async def dependency(credentials: Bearer) -> ApiKey:
            text = _key_text(credentials)
            key = await run_in_threadpool(self.cfg.ledger.authenticate_key, text)
            # async so this lands in the request's context, which the route's thread copies
            return self.admit(key, permission)

        return dependency

    def admit(self, key: ApiKey | None, permission: str) -> ApiKey:
        """The key found for the request, or 401/429/403; binds its school and name (as
        `actor`) in the calling context's log context."""
        if key is None:
            raise ApiError(
                401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        bind_actor(key.school, key.name)
        wait = self.cfg.rate.take(f"{key.school}/{key.id}")
        if wait is not None:
            raise ApiError(
                429,
                f"too many requests for key {key.name}: retry in {wait:.1f} s",
                headers=retry_after_header(wait),
            )
        if not key.can(permission):
            raise ApiError(
                403,
                f"key {key.name} may not {PERMISSION_WORDS[permission]}: "
                f"this needs the {permission} permission",
            )
        return key

    async def run_as(
        self,
        credentials: HTTPAuthorizationCredentials | None,
        permission: str,
        work: Callable[[ApiKey], T],
    ) -> T:
        """`work(key)` for the request's key, the key looked up (401/429/403 as `requires`) in
        the same worker thread as the work: one threadpool hop per request, not two. The key's
        school and name join the log context of the thread and, after, of the request."""
        text = _key_text(credentials)
        admitted: list[ApiKey] = []

        def run() -> T:
            found = self.cfg.ledger.authenticate_key(text)
            if found is not None:
                admitted.append(found)  # a 429 or 403 is the key's too
            return work(self.admit(found, permission))

        try:
            return await run_in_threadpool(run)
        finally:
            if admitted:  # the thread bound them in its copy of the context only
                bind_actor(admitted[0].school, admitted[0].name)


def _key_text(credentials: HTTPAuthorizationCredentials | None) -> str:
    """The key of an `Authorization: Bearer` header; 401 without one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(
            401,
            "an API key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return credentials.credentials


# --- helpers -------------------------------------------------------------------------------------


def json_body(body: bytes) -> Any:
    """The body as records.py reads a JSON line (exact decimals, no repeated keys): malformed
    JSON is 400, a repeated key or too deep nesting 422 naming it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise ApiError(400, "the body is empty: send a JSON object")
    try:
        return read_json_document(text)
    except RecordError as exc:
        if exc.reason.startswith(NOT_JSON):
            raise ApiError(400, f"the body {exc.reason}") from None
        raise service_error(exc) from None


def parse_record(kind: RecordKind, value: Any) -> Record:
    """domain/records.py's validation; 422 naming the field with the CLI's reason."""
    try:
        return PARSERS[kind](value)
    except RecordError as exc:
        raise service_error(exc) from None


def recorded_answer(recorded: records_use_case.Recorded) -> JSONResponse:
    """201 with the new financial event, 200 for a duplicate (it appended nothing)."""
    event = recorded.event
    answer = models.RecordedOut(
        id=str(event.id),
        reference=event.reference,
        status=event.status.value,
        duplicate=recorded.duplicate,
    )
    return JSONResponse(answer.model_dump(), status_code=200 if recorded.duplicate else 201)


def record_one(ledger: FlightLedger, key: ApiKey, record: Record) -> JSONResponse:
    """Append one record: 201 new, 200 identical duplicate, 409 same id, other contents."""
    try:
        recorded = records_use_case.record(ledger, key.school, record, actor=key.name)
    except records_use_case.RecordedDifferently as exc:
        raise service_error(exc) from None
    return recorded_answer(recorded)


def parse_correction(kind: RecordKind, value: Any) -> Correction:
    """domain/records.py's validation of a correction; 422 naming the field, as the CLI."""
    try:
        return CORRECTION_PARSERS[kind](value)
    except RecordError as exc:
        raise service_error(exc) from None


def with_path_id(value: Any, name: str, path_id: str) -> Any:
    """The body with the path's id filled in; a different id in the body is a 422 naming it."""
    if not isinstance(value, dict):
        return value  # the parser names the problem
    if name in value and value[name] != path_id:
        reason = f"must match the path ({path_id!r}) or be left out"
        raise ApiError(422, f"{name}: {reason}", fields=[_f(name, reason)])
    return {name: path_id, **value}


def record_correction_one(ledger: FlightLedger, key: ApiKey, record: Correction) -> JSONResponse:
    """Apply one correction as the CLI does: 201 appended, 200 duplicate (it changes nothing),
    404 for a flight or payment the school has not recorded, 422 when it cannot apply, 409 for a
    refund id already recorded with other contents."""
    try:
        recorded = records_use_case.record_correction(ledger, key.school, record, actor=key.name)
    except (RecordError, records_use_case.RecordedDifferently) as exc:  # UnknownRecord: 404
        raise service_error(exc) from None
    return recorded_answer(recorded)


def record_corrections(
    ledger: FlightLedger, key: ApiKey, kind: RecordKind, items: Sequence[Any]
) -> models.BatchOut:
    """A batch of corrections, each applied on its own (as `record KIND FILE` does)."""
    totals = records_use_case.record_corrections(ledger, key.school, kind, items, actor=key.name)
    return models.BatchOut(
        recorded=totals.recorded,
        duplicates=totals.duplicates,
        rejected=[
            models.RejectedOut(index=index, field=name, reason=reason)
            for index, name, reason in totals.rejected
        ],
    )


def record_batch(ledger: FlightLedger, key: ApiKey, value: Any) -> models.BatchOut:
    """POST /records: up to MAX_BATCH records of one kind, each valid one appended (one
    transaction), each invalid one rejected by index with its field; corrections each apply
    on their own."""
    if not isinstance(value, dict):
        raise ApiError(422, "body: must be an object", fields=[_f("body", "must be an object")])
    unknown = sorted(set(value) - {"kind", "records"})
    if unknown:
        raise ApiError(
            422,
            f"{unknown[0]}: unknown field",
            fields=[_f(u, "unknown field") for u in unknown],
        )
    kinds = [k.value for k in RecordKind if k in PARSERS or k in CORRECTION_PARSERS]
    kind_text = value.get("kind")
    if kind_text not in kinds:
        reason = f"must be one of {', '.join(kinds)}"
        raise ApiError(422, f"kind: {reason}", fields=[_f("kind", reason)])
    items = value.get("records")
    if not isinstance(items, list):
        raise ApiError(422, "records: must be a list", fields=[_f("records", "must be a list")])
    if len(items) > MAX_BATCH:
        reason = f"at most {MAX_BATCH} records per request (got {len(items)})"
        raise ApiError(422, f"records: {reason}", fields=[_f("records", reason)])
    kind = RecordKind(kind_text)
    if kind in CORRECTION_PARSERS:
        return record_corrections(ledger, key, kind, items)
    valid: list[Record] = []
    rejected: list[models.RejectedOut] = []
    for index, item in enumerate(items):
        try:
            valid.append(PARSERS[kind](item))
        except RecordError as exc:
            rejected.append(models.RejectedOut(index=index, field=exc.field, reason=exc.reason))
    result = ledger.record_batch(key.school, valid, actor=key.name)
    return models.BatchOut(
        recorded=result.recorded, duplicates=result.duplicates, rejected=rejected
    )


def _event_out(row: Any) -> models.EventOut:
    return models.EventOut.model_validate(to_jsonable(row_json(row)))


def _check_choice(value: str | None, choices: Sequence[str], name: str) -> None:
    if value is not None and value not in choices:
        reason = f"unknown {name} {value!r}; one of {', '.join(choices)}"
        raise ApiError(422, f"{name}: {reason}", fields=[{"field": name, "reason": reason}])


# --- the routes ----------------------------------------------------------------------------------


def install_api(app: FastAPI, cfg: ApiConfig) -> None:
    """Add /api/v1, /healthz, /readyz, /metrics, /openapi.json and /docs to the app."""
    auth = KeyAuth(cfg)
    cfg.auth = auth
    ledger = cfg.ledger
    router = APIRouter(prefix="/api/v1", responses=ERRORS)

    def records_route(kind: RecordKind, path: str, schema: dict[str, Any], summary: str) -> None:
        @router.post(
            path,
            status_code=201,
            response_model=models.RecordedOut,
            responses={200: {"model": models.RecordedOut, "description": "Duplicate"}, **CONFLICT},
            openapi_extra=request_body(schema),
            summary=summary,
            tags=["records"],
            name=f"record_{kind.value.replace('-', '_')}",
        )
        async def post_record(request: Request, credentials: Bearer) -> Response:
            body = await request.body()

            def work(key: ApiKey) -> Response:
                return record_one(ledger, key, parse_record(kind, json_body(body)))

            return await auth.run_as(credentials, RECORDS_WRITE, work)

    records_route(RecordKind.FLIGHT_ENDED, "/flights", FLIGHT_ENDED, "Record a flight that ended")
    records_route(
        RecordKind.INVOICE_REQUESTED,
        "/invoice-requests",
        INVOICE_REQUESTED,
        "Record an invoice request",
    )
    records_route(
        RecordKind.PAYMENT_RECEIVED, "/payments", PAYMENT_RECEIVED, "Record a payment received"
    )

    def correction_route(
        kind: RecordKind, path: str, schema: dict[str, Any], summary: str, path_id: str | None
    ) -> None:
        @router.post(
            path,
            status_code=201,
            response_model=models.RecordedOut,
            responses={
                200: {"model": models.RecordedOut, "description": "Duplicate: changes nothing"},
                **CONFLICT,
            },
            openapi_extra=request_body(schema),
            summary=summary,
            tags=["corrections"],
            name=f"record_{kind.value.replace('-', '_')}",
        )
        async def post_correction(request: Request, credentials: Bearer) -> Response:
            body = await request.body()
            path_value = None if path_id is None else str(request.path_params[path_id])

            def work(key: ApiKey) -> Response:
                value = json_body(body)
                if path_id is not None and path_value is not None:
                    value = with_path_id(value, path_id, path_value)
                return record_correction_one(ledger, key, parse_correction(kind, value))

            return await auth.run_as(credentials, RECORDS_WRITE, work)

    correction_route(
        RecordKind.FLIGHT_AMENDED,
        "/flights/{flight_id}/amendments",
        FLIGHT_AMENDMENT,
        "Amend a recorded flight (replaces its charges, hobbs and student)",
        "flight_id",
    )
    correction_route(
        RecordKind.FLIGHT_CANCELLED,
        "/flights/{flight_id}/cancellation",
        FLIGHT_CANCELLATION,
        "Cancel a recorded flight",
        "flight_id",
    )
    correction_route(
        RecordKind.PAYMENT_REFUNDED,
        "/refunds",
        PAYMENT_REFUNDED,
        "Refund (part of) a payment",
        None,
    )

    @router.post(
        "/records",
        response_model=models.BatchOut,
        openapi_extra=request_body(BATCH),
        summary="Record up to 1,000 records (or corrections) of one kind",
        tags=["records"],
    )
    async def post_records(request: Request, credentials: Bearer) -> models.BatchOut:
        body = await request.body()
        return await auth.run_as(
            credentials, RECORDS_WRITE, lambda key: record_batch(ledger, key, json_body(body))
        )

    @router.get("/events", response_model=models.EventsPage, tags=["view"])
    def list_events(
        status: Annotated[str | None, Query(description="Only this status")] = None,
        reason: Annotated[str | None, Query(description="Only this reason code")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        key: ApiKey = Depends(auth.requires(VIEW)),
    ) -> models.EventsPage:
        """The financial-event view, newest first, paged by a keyset cursor."""
        _check_choice(status, STATUSES, "status")
        _check_choice(reason, REASON_VALUES, "reason")
        before: int | None = None
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 18:
                reason_text = "is not a cursor this API handed out"
                raise ApiError(422, f"cursor: {reason_text}", fields=[_f("cursor", reason_text)])
            before = int(cursor)
        cfg.refresh()
        rows = cfg.view.newest_first(
            key.school, status=status, reason_code=reason, before=before, limit=limit + 1
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return models.EventsPage(
            items=[_event_out(r) for r in rows],
            next_cursor=str(rows[-1].position) if more and rows else None,
        )

    @router.get("/events/{ref}", response_model=models.EventOut, tags=["view"])
    def get_event(ref: str, key: ApiKey = Depends(auth.requires(VIEW))) -> models.EventOut:
        """One row: REF is the event id, flight id, request id or payment id."""
        event = _find(ledger, key.school, ref)
        cfg.refresh()
        row = cfg.view.get(event.id)
        if row is None or row.school != key.school:
            raise ApiError(404, f"no financial event {ref!r}")
        return _event_out(row)

    @router.get("/events/{ref}/history", response_model=list[models.HistoryOut], tags=["view"])
    def get_history(ref: str, key: ApiKey = Depends(auth.requires(VIEW))) -> list[Any]:
        """Every event of one financial event, as auditors read it."""
        try:
            entries = ledger.history(key.school, ref)
        except NotFound as exc:
            raise service_error(exc, ref=ref) from None
        return [
            models.HistoryOut(
                position=e.position,
                log_position=e.log_position,
                at=e.at,
                type=e.type,
                actor=e.actor,
                data=to_jsonable(e.data),
            )
            for e in entries
        ]

    @router.get("/action-required", response_model=list[models.GroupOut], tags=["view"])
    def action_required(key: ApiKey = Depends(auth.requires(VIEW))) -> list[models.GroupOut]:
        """The Action Required groups with what to do."""
        cfg.refresh()
        return [
            models.GroupOut(
                reason_code=g.reason_code,
                count=g.count,
                example=g.example,
                fix=fix_for(g.reason_code, g.missing),
            )
            for g in cfg.view.reason_groups(key.school)
        ]

    @router.post(
        "/retry-failed", response_model=models.RetryOut, responses=CONFLICT, tags=["actions"]
    )
    def retry_failed(
        body: models.RetryIn | None = None, key: ApiKey = Depends(auth.requires(RETRY))
    ) -> models.RetryOut:
        """Requeue the chosen events whose cause is fixed; 409 when every one is still blocked."""
        choice = body or models.RetryIn()
        ids = choice.ids or []
        if not ids:
            cfg.refresh()
        try:
            outcome = use_case.retry_failed(
                ledger,
                key.school,
                reason=choice.reason,
                ids=ids,
                operator=key.name,
                rows=cfg.view,
                lists=cfg.qbo_lists,
            )
        except SelectionError as exc:  # UnknownEvent: 404
            raise service_error(exc) from None
        log.info(
            "api_retry_failed_requested",
            school=key.school,
            key=key.name,
            requeued=outcome.requeued,
            skipped=outcome.skipped,
        )
        if outcome.all_blocked:
            raise ApiError(
                409,
                f"nothing requeued, the cause is not fixed: {outcome.why_blocked()}",
                code="blocked",
                fields=[_f(b["reason_code"], b["why"]) for b in outcome.blocked],
            )
        return models.RetryOut.model_validate(outcome.summary())

    @router.post(
        "/events/{ref}/dismiss", response_model=models.OkOut, responses=CONFLICT, tags=["actions"]
    )
    def dismiss(
        ref: str, body: models.DismissIn, key: ApiKey = Depends(auth.requires(RETRY))
    ) -> models.OkOut:
        """Stop one event from being sent (kept in the log with who and why)."""
        try:
            use_case.dismiss(ledger, key.school, ref, operator=key.name, note=body.note)
        except (NoteRequired, NotFound, TransitionRefused) as exc:
            raise service_error(exc, ref=ref) from None
        return models.OkOut(ok=True)

    @router.get("/connection", response_model=models.ConnectionOut, tags=["connection"])
    def connection(key: ApiKey = Depends(auth.requires(VIEW))) -> Any:
        """The connection pill and badge."""
        now = ledger.clock.now()
        if cfg.connections is not None:
            return to_jsonable(cfg.connections.status(key.school, now))
        return to_jsonable(connection_status(ledger, key.school, now))

    @router.post(
        "/connection/test",
        response_model=models.ConnectionTestOut,
        responses={503: {"model": models.ErrorOut, "description": "QuickBooks not configured"}},
        tags=["connection"],
    )
    def connection_test(key: ApiKey = Depends(auth.requires(VIEW))) -> models.ConnectionTestOut:
        """A live check against QuickBooks."""
        if cfg.connections is None:
            raise ApiError(503, "QuickBooks is not configured on this server")
        check = cfg.connections.test(key.school, key.name)
        return models.ConnectionTestOut(**check_document(check))

    @router.get("/mappings", response_model=list[models.MappingOut], tags=["mappings"])
    def list_mappings(
        include_inactive: bool = False, key: ApiKey = Depends(auth.requires(VIEW))
    ) -> list[Any]:
        """The school's mappings."""
        return mapping_rows(ledger.mappings(key.school), include_inactive=include_inactive)

    @router.put("/mappings/{kind}/{key}", response_model=models.OkOut, tags=["mappings"])
    def set_mapping(
        kind: str,
        key: str,
        body: models.MappingIn,
        api_key: ApiKey = Depends(auth.requires(ADMIN)),
    ) -> models.OkOut:
        """Map a charge code, student or payment type to a QuickBooks id (checked against
        QuickBooks' cached lists when there are any, as the CLI and the settings page do)."""
        _check_choice(kind, tuple(MAPPING_KINDS), "kind")
        which = MAPPING_KINDS[kind]
        name = _mapping_input(mapping_input.mapping_key, key, "key")
        qbo_id = _mapping_input(mapping_input.qbo_id, body.qbo_id, "qbo_id")
        method = body.payment_method_id
        method_id = (
            None
            if method is None
            else _mapping_input(mapping_input.qbo_id, method, "payment_method_id")
        )
        change = mappings_use_case.MappingChange(
            which, name, qbo_id, payment_method_id=method_id, active=body.active
        )
        try:
            mappings_use_case.set_mapping(
                ledger,
                api_key.school,
                change,
                operator=api_key.name,
                lists=_cached_lists(cfg, api_key.school),
                allow_inactive=body.allow_inactive,
            )
        except (mappings_use_case.ReferenceRefused, mappings_use_case.MappingRefused) as exc:
            raise service_error(exc) from None
        return models.OkOut(ok=True)

    @router.put("/defaults", response_model=models.OkOut, tags=["mappings"])
    def set_defaults(
        body: models.DefaultsIn, key: ApiKey = Depends(auth.requires(ADMIN))
    ) -> models.OkOut:
        """Set invoice defaults (term, memo, income account); those not given are kept."""
        term = (
            None if body.term is None else _mapping_input(mapping_input.qbo_id, body.term, "term")
        )
        income = (
            None
            if body.income_account is None
            else _mapping_input(mapping_input.qbo_id, body.income_account, "income_account")
        )
        memo = None if body.memo is None else _mapping_input(mapping_input.memo, body.memo, "memo")
        try:
            mappings_use_case.set_defaults(
                ledger,
                key.school,
                operator=key.name,
                term_id=term,
                memo=memo,
                income_account_id=income,
                lists=_cached_lists(cfg, key.school),
                allow_inactive=body.allow_inactive,
            )
        except (mappings_use_case.NothingToSet, mappings_use_case.ReferenceRefused) as exc:
            raise service_error(exc) from None
        return models.OkOut(ok=True)

    @router.get("/checklist", response_model=list[models.ChecklistOut], tags=["view"])
    def checklist(key: ApiKey = Depends(auth.requires(VIEW))) -> list[Any]:
        """The setup checklist: each line ok or the exact thing to do."""
        if cfg.checklist is None:
            raise ApiError(503, "the checklist is not available on this server")
        cfg.refresh()
        return list(cfg.checklist(key.school))

    _webhook_routes(router, cfg, auth)
    for add in cfg.extra_routes:
        add(router, cfg)
    app.include_router(router)
    _install_probes(app, cfg)
    _install_openapi(app, router)
    install_error_handlers(app)
    install_request_context(app)  # a no-op when the dashboard's create_app did it
    app.add_middleware(BodyLimit, limit=cfg.body_limit)
    app.add_middleware(CountRequests)


class CountRequests:
    """ASGI middleware: each /api/ request counted by route template and status, and timed
    (plain ASGI: no task and stream per request as a BaseHTTPMiddleware has)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count it once its answer has started (500 if none did)."""
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/api/"):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")  # set by the router
            metrics.HTTP_REQUESTS.labels(route=template, status=str(status)).inc()
            metrics.HTTP_REQUEST_SECONDS.labels(route=template).observe(time.monotonic() - started)


def _webhook_routes(router: APIRouter, cfg: ApiConfig, auth: KeyAuth) -> None:
    ledger = cfg.ledger

    @router.post(
        "/webhooks",
        status_code=201,
        response_model=models.WebhookCreatedOut,
        responses={503: {"model": models.ErrorOut, "description": "No secret store"}},
        tags=["webhooks"],
    )
    def subscribe(
        body: models.WebhookIn, key: ApiKey = Depends(auth.requires(ADMIN))
    ) -> models.WebhookCreatedOut:
        """Subscribe a receiver; its signing secret (`whsec_...`) is shown this once."""
        if cfg.webhook_secrets is None:
            raise ApiError(503, "webhooks need the secret vault (FLIGHTLEDGER_SECRET_KEY)")
        unknown = [e for e in body.events if e not in EVENT_TYPES]
        if unknown:
            reason = f"unknown event type {unknown[0]!r}; one of {', '.join(EVENT_TYPES)}"
            raise ApiError(422, f"events: {reason}", fields=[_f("events", reason)])
        try:
            url = check_receiver(body.url, allow_private=cfg.allow_private_webhooks)
        except UnsafeReceiver as exc:
            raise service_error(exc, field="url") from None
        events = list(dict.fromkeys(body.events))
        sub = ledger.subscribe_webhook(key.school, url=url, events=events, operator=key.name)
        secret = new_secret()
        cfg.webhook_secrets.put_secret(key.school, secret_name(sub.id), secret)
        return models.WebhookCreatedOut(id=sub.id, url=sub.url, events=events, secret=secret)

    @router.get("/webhooks", response_model=list[models.WebhookOut], tags=["webhooks"])
    def list_webhooks(key: ApiKey = Depends(auth.requires(ADMIN))) -> list[models.WebhookOut]:
        """The school's subscriptions (no secrets)."""
        subs = ledger.webhooks(key.school).subscriptions.values()
        return [
            models.WebhookOut(
                id=s.id, url=s.url, events=list(s.events), active=s.active, created_at=s.created_at
            )
            for s in sorted(subs, key=lambda s: s.created_at)
        ]

    @router.delete("/webhooks/{webhook_id}", response_model=models.OkOut, tags=["webhooks"])
    def unsubscribe(webhook_id: str, key: ApiKey = Depends(auth.requires(ADMIN))) -> models.OkOut:
        """Delete a subscription: nothing more is delivered to it."""
        if not ledger.unsubscribe_webhook(key.school, webhook_id, operator=key.name):
            raise ApiError(404, f"no webhook {webhook_id!r}")
        return models.OkOut(ok=True)

    @router.get(
        "/webhooks/{webhook_id}/deliveries",
        response_model=list[models.DeliveryOut],
        tags=["webhooks"],
    )
    def deliveries(
        webhook_id: str, key: ApiKey = Depends(auth.requires(ADMIN))
    ) -> list[models.DeliveryOut]:
        """Every delivery to the subscription, newest first, with each attempt."""
        if webhook_id not in ledger.webhooks(key.school).subscriptions:
            raise ApiError(404, f"no webhook {webhook_id!r}")
        return [
            models.DeliveryOut(
                id=d.id,
                type=d.type,
                state=d.state,
                created_at=d.created_at,
                next_at=d.next_at,
                payload=d.payload,
                attempts=[
                    models.AttemptOut(
                        at=a.at, status_code=a.status_code, outcome=a.outcome, detail=a.detail
                    )
                    for a in d.attempts
                ],
            )
            for d in outbox(ledger).of_subscription(webhook_id)[:MAX_PAGE]
        ]


def _mapping_input(check: Callable[[str, str], str], value: str, name: str) -> str:
    """domain/mapping_input.py's check (the CLI's and settings page's words) as a 422."""
    try:
        return check(value, name)
    except mapping_input.InvalidMappingInput as exc:
        raise service_error(exc, field=name) from None


def _cached_lists(cfg: ApiConfig, school: str) -> QboLists | None:
    """QuickBooks' cached lists a mapping is checked with; without them the mapping is
    recorded unchecked, as the CLI does when QuickBooks is away (a request never reads them)."""
    return cfg.qbo_lists.cached(school) if cfg.qbo_lists is not None else None


def _f(name: str, reason: str) -> dict[str, str]:
    return {"field": name, "reason": reason}


def _find(ledger: FlightLedger, school: str, ref: str) -> Any:
    try:
        return ledger.find(school, ref)
    except NotFound as exc:
        raise service_error(exc, ref=ref) from None


def _install_probes(app: FastAPI, cfg: ApiConfig) -> None:
    app.router.routes[:] = [
        r for r in app.router.routes if not (isinstance(r, Route) and r.path == "/healthz")
    ]

    @app.get("/healthz", response_model=models.AliveOut, tags=["operations"])
    def healthz() -> models.AliveOut:
        """Alive."""
        return models.AliveOut(ok=True)

    @app.get(
        "/readyz",
        response_model=models.HealthOut,
        responses={503: {"model": models.ErrorOut, "description": "Not ready"}},
        tags=["operations"],
    )
    def readyz() -> models.HealthOut:
        """The database answers, the view is within `ready_lag` events of the log and the latest
        worker heartbeat does not say unhealthy."""
        try:
            head = int(cfg.ledger.recorder.max_notification_id() or 0)
            tracked = cfg.view.max_tracking_id()
        except Exception as exc:
            raise ApiError(
                503, f"the database is not reachable ({type(exc).__name__})", code="not_ready"
            ) from None
        lag = max(0, head - tracked)
        failing = cfg.worker_unhealthy() if cfg.worker_unhealthy is not None else None
        if failing:
            raise ApiError(
                503, f"the worker reports unhealthy: every pass fails ({failing})", code="not_ready"
            )
        if lag > cfg.ready_lag:
            raise ApiError(
                503,
                f"the view is {lag} events behind the log (bound {cfg.ready_lag})",
                code="not_ready",
            )
        return models.HealthOut(ok=True, lag=lag)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text"},
            403: {"model": models.ErrorOut, "description": "Not a loopback client"},
            404: {"model": models.ErrorOut, "description": "Metrics not enabled"},
        },
        tags=["operations"],
    )
    def metrics(request: Request) -> Response:
        """Prometheus metrics (served to loopback clients only)."""
        client = request.client.host if request.client else ""
        if client not in ("127.0.0.1", "::1", "localhost", "testclient"):
            raise ApiError(403, "metrics are served to loopback clients only")
        if cfg.metrics is None:
            raise ApiError(404, "metrics are not enabled on this server")
        body, content_type = cfg.metrics()
        return Response(body, media_type=content_type)


def _api_routes(app: FastAPI, router: APIRouter) -> list[BaseRoute]:
    probes = ("/healthz", "/readyz", "/metrics")
    found = [r for r in app.routes if isinstance(r, Route) and r.path in probes]
    return [*router.routes, *found]


def _install_openapi(app: FastAPI, router: APIRouter) -> None:
    document: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not document:
            document.update(
                get_openapi(
                    title="flightledger API",
                    version="1",
                    description=(
                        "Flights in, QuickBooks invoices out. Authenticate with "
                        "`Authorization: Bearer <key>` (`flightledger keys create`)."
                    ),
                    routes=_api_routes(app, router),
                )
            )
        return document

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(openapi())

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="flightledger API")
