"""The web dashboard: FastAPI + Jinja2 pages over the ledger, the view and the connection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from adapters.authorization_url import INTUIT_AUTHORIZATION_ORIGIN
from adapters.request_context import install_request_context
from adapters.web.access import Access, Forbidden
from adapters.web.auth import SessionSigner, User, UserDirectory
from adapters.web.config import ChecklistProvider, WebConfig
from adapters.web.connection import ConnectionServicePort
from adapters.web.pages import Pages, install_error_handlers
from adapters.web.routes import actions, audit, connection, reading, settings, signin
from adapters.web.routes.reading import EVENTS_LIMIT, REASON_CODES, STATUS_ORDER
from adapters.web.security import DEFAULT_ALLOWED_HOSTS, install_security
from adapters.web.session import SESSION_COOKIE, install_session
from domain.application import FlightLedger
from domain.ports import Clock
from domain.qbo_lists import QboListsPort
from domain.retry import FAILED_GROUP
from projections.view import FinancialEventView

__all__ = [
    "EVENTS_LIMIT",
    "FAILED_GROUP",
    "HERE",
    "REASON_CODES",
    "SESSION_COOKIE",
    "STATUS_ORDER",
    "ChecklistProvider",
    "Forbidden",
    "WebConfig",
    "create_app",
]

HERE = Path(__file__).parent


def create_app(
    *,
    ledger: FlightLedger,
    view: FinancialEventView,
    session_key: bytes,
    connections: ConnectionServicePort | None = None,
    users: UserDirectory | None = None,
    local_user: User | None = None,
    clock: Clock | None = None,
    authorization_origins: Sequence[str] = (INTUIT_AUTHORIZATION_ORIGIN,),
    checklist: ChecklistProvider | None = None,
    refresh_view: Callable[[], Any] | None = None,
    secure_cookies: bool = False,
    connections_unavailable: str = "",
    qbo_lists: QboListsPort | None = None,
    allowed_hosts: Sequence[str] = DEFAULT_ALLOWED_HOSTS,
    audit_export: Any = None,
    audit_verify: Any = None,
) -> FastAPI:
    """Build the dashboard; exactly one of `users` (sign-in) or `local_user` must be given.

    `allowed_hosts`: the Host names it answers (adapters/web/security.py; '*' = any).
    """
    if (users is None) == (local_user is None):
        raise ValueError("give either a users directory or a local operator, not both or neither")
    cfg = WebConfig(
        ledger=ledger,
        view=view,
        session_key=session_key,
        connections=connections,
        users=users,
        local_user=local_user,
        clock=clock or ledger.clock,
        authorization_origins=tuple(authorization_origins),
        checklist=checklist,
        refresh_view=refresh_view,
        secure_cookies=secure_cookies,
        connections_unavailable=connections_unavailable
        or "QuickBooks is not configured on this server: set FLIGHTLEDGER_QBO_CLIENT_ID and "
        "FLIGHTLEDGER_QBO_CLIENT_SECRET (or FLIGHTLEDGER_QBO_ENVIRONMENT=simulator) and "
        "FLIGHTLEDGER_SECRET_KEY, then restart the dashboard.",
        qbo_lists=qbo_lists,
        audit_export=audit_export,
        audit_verify=audit_verify,
    )
    access = Access(cfg)
    pages = Pages(access)
    app = FastAPI(title="flightledger", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = cfg
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    install_session(app, SessionSigner(session_key), secure_cookies=cfg.secure_cookies)
    install_security(app, allowed_hosts)  # added last = runs first: before the session
    install_request_context(app)  # outermost: request_id on every line, the host check's too
    install_error_handlers(app, pages)
    signin.register(app, cfg, pages)
    reading.register(app, cfg, access, pages)
    actions.register(app, cfg, access)
    connection.register(app, cfg, access, pages)
    settings.register(app, cfg, access, pages)
    audit.register(app, cfg, access, pages)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"ok": "true"}

    return app
