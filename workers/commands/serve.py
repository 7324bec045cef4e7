"""`serve [--host H] [--port P]`: the web dashboard, wired to the real ledger, view and QBO."""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import structlog
import typer

from adapters.api.app import ApiConfig, install_api
from adapters.api.limits import DEFAULT_BURST, DEFAULT_RATE_PER_MINUTE, RateLimiter
from adapters.authorization_url import INTUIT_AUTHORIZATION_ORIGIN
from adapters.metrics import exposition, view_reading
from adapters.persistence import log_channel
from adapters.web.app import create_app
from adapters.web.auth import UserDirectory, UsersFileError, is_loopback, local_operator
from adapters.web.security import ALLOWED_HOSTS_VARIABLE, parse_allowed_hosts, served_hosts
from domain.application import FlightLedger
from projections.view import FinancialEventView, ProjectedView
from services.connection import ConnectionServicePort
from workers.commands.audit import school_export
from workers.context import EXIT_USAGE, CliContext, fail, get_context, stderr
from workers.selection import checklist, checklist_rows, worker_unhealthy

log = structlog.get_logger(__name__)

USERS_FILE_VARIABLE = "FLIGHTLEDGER_USERS_FILE"
SESSION_KEY_VARIABLE = "FLIGHTLEDGER_WEB_SESSION_KEY"
RATE_VARIABLE = "FLIGHTLEDGER_API_RATE_PER_MINUTE"
BURST_VARIABLE = "FLIGHTLEDGER_API_BURST"


def session_key(env: dict[str, str]) -> bytes:
    """A stable key from FLIGHTLEDGER_WEB_SESSION_KEY, else a random one (sessions end on exit)."""
    configured = env.get(SESSION_KEY_VARIABLE, "")
    if configured:
        return hashlib.sha256(configured.encode("utf-8")).digest()
    return os.urandom(32)


def authorization_origins(env: dict[str, str]) -> tuple[str, ...]:
    """Intuit's authorization origin, plus the loopback simulator's when one is configured."""
    try:
        from adapters.quickbooks.settings import QboSettings

        return QboSettings.from_env(env).authorization_origins
    except ValueError:
        return (INTUIT_AUTHORIZATION_ORIGIN,)


REDIRECT_URI_VARIABLE = "FLIGHTLEDGER_QBO_REDIRECT_URI"


def served_redirect_uri(host: str, port: int) -> str:
    """The OAuth redirect URI of the address this dashboard serves (wildcard: localhost)."""
    name = "localhost" if host in ("0.0.0.0", "::", "") else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"http://{name}:{port}/qbo/callback"


def allowed_hosts(host: str, env: dict[str, str]) -> tuple[str, ...]:
    """Host names the dashboard answers: the bound address, loopback names, the QBO redirect
    URI's host and FLIGHTLEDGER_ALLOWED_HOSTS (comma-separated; '*' turns the check off)."""
    extra = list(parse_allowed_hosts(env.get(ALLOWED_HOSTS_VARIABLE, "")))
    redirect = urlsplit(env.get(REDIRECT_URI_VARIABLE, "")).hostname
    if redirect:
        extra.append(redirect)
    return served_hosts(host, extra)


def connection_service(cli: CliContext) -> tuple[ConnectionServicePort | None, str]:
    """workers/qbo.py's ConnectionService, or None with the reason it is unavailable."""
    try:
        qbo: Any = importlib.import_module("workers.qbo")
    except ImportError:
        return None, "the QuickBooks wiring (workers/qbo.py) is not installed"
    try:  # the CLI's `connection ...` commands use the same use cases, wired the same way
        service: ConnectionServicePort = qbo.connection_service(
            cli.ledger(), cli.config.database, cli.config.env
        )
    except Exception as exc:  # configuration problems are stated, the dashboard still serves
        return None, str(exc) or type(exc).__name__
    return service, ""


def open_dashboard_view(
    cli: CliContext, ledger: FlightLedger
) -> tuple[ProjectedView, Callable[[], Any] | None]:
    """The stored view kept current by catching the projector up before reads."""
    from adapters.views import open_view
    from workers.projector import Projector

    view = open_view(cli.config.database)
    cli.closers.append(view.close)
    projector = Projector(ledger, view)
    lock = threading.Lock()

    def refresh() -> None:
        with lock:
            projector.catch_up()

    refresh()
    return view, refresh


def api_config(
    cli: CliContext,
    ledger: FlightLedger,
    view: FinancialEventView,
    refresh: Callable[[], Any] | None,
    service: ConnectionServicePort | None,
) -> ApiConfig:
    """The API's configuration: the same ledger, view and connection service as the dashboard;
    FLIGHTLEDGER_API_RATE_PER_MINUTE / FLIGHTLEDGER_API_BURST bound each key's requests."""
    env = cli.config.env
    reading = view_reading(ledger, view)
    try:
        per_minute = float(env.get(RATE_VARIABLE, "") or DEFAULT_RATE_PER_MINUTE)
        burst = int(env.get(BURST_VARIABLE, "") or DEFAULT_BURST)
    except ValueError:
        fail(cli, f"{RATE_VARIABLE} and {BURST_VARIABLE} must be numbers", EXIT_USAGE)
    return ApiConfig(
        ledger=ledger,
        view=view,
        refresh_view=refresh,
        connections=service,
        checklist=lambda school: checklist_rows(
            checklist(ledger, view, cli.config.database, school)
        ),
        rate=RateLimiter(per_minute=per_minute, burst=burst),
        metrics=lambda: exposition(reading),
        worker_unhealthy=lambda: worker_unhealthy(cli.config.database),
    )


def start_webhooks(
    cli: CliContext, ledger: FlightLedger, api: ApiConfig, view: ProjectedView | None = None
) -> Any:
    """The webhook deliverer in its own thread (secrets in the vault); None without a vault."""
    from adapters.webhooks import ALLOW_PRIVATE_VARIABLE, WebhookDeliverer

    try:
        qbo: Any = importlib.import_module("workers.qbo")
        vault = qbo.open_vault(cli.config.database, cli.config.env, create_key=False)
    except Exception as exc:  # stated, the rest serves
        stderr().print(f"webhooks are unavailable: {exc}", markup=False)
        return None
    api.webhook_secrets = vault
    api.allow_private_webhooks = cli.config.env.get(ALLOW_PRIVATE_VARIABLE, "") == "1"
    channel = log_channel(ledger.recorder)  # as the projector
    deliverer = WebhookDeliverer(
        ledger,
        vault,
        allow_private=api.allow_private_webhooks,
        listen=None if view is None else lambda: view.listen(channel),
    )
    deliverer.start()
    cli.closers.append(deliverer.stop)
    return deliverer


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind"),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to bind"),
) -> None:
    """Serve the web dashboard (sign-in from FLIGHTLEDGER_USERS_FILE, or local operator mode)."""
    import uvicorn

    cli = get_context(ctx)
    users_file = cli.config.env.get(USERS_FILE_VARIABLE, "")
    users: UserDirectory | None = None
    if users_file:
        try:
            users = UserDirectory.from_file(users_file)
        except UsersFileError as exc:
            fail(cli, str(exc), EXIT_USAGE)
    elif not is_loopback(host):
        fail(
            cli,
            f"refusing to serve on {host} without a users file: set {USERS_FILE_VARIABLE} "
            "(a JSON list of users with hashed tokens) or bind 127.0.0.1",
        )
    from workers.qbo import ConnectionService
    from workers.qbo_lists import list_service

    if not cli.config.env.get(REDIRECT_URI_VARIABLE):
        # the callback comes back to the address actually served, not a fixed localhost:8000
        cli.config.env[REDIRECT_URI_VARIABLE] = served_redirect_uri(host, port)
    ledger = cli.ledger()
    view, refresh = open_dashboard_view(cli, ledger)
    service, why = connection_service(cli)
    app = create_app(
        ledger=ledger,
        view=view,
        session_key=session_key(cli.config.env),
        connections=service,
        connections_unavailable=why,
        users=users,
        local_user=None if users is not None else local_operator(cli.school),
        authorization_origins=authorization_origins(cli.config.env),
        refresh_view=refresh,
        qbo_lists=list_service(cli, service if isinstance(service, ConnectionService) else None),
        audit_export=lambda school, since, until, fmt: school_export(
            ledger, school, since, until, fmt
        ),
        audit_verify=lambda: _verdict(ledger, view),
        checklist=lambda school: checklist_rows(
            checklist(ledger, view, cli.config.database, school)
        ),
        allowed_hosts=allowed_hosts(host, cli.config.env),
    )
    api = api_config(cli, ledger, view, refresh, service)
    api.qbo_lists = app.state.web.qbo_lists  # the same cached lists as the settings page
    start_webhooks(cli, ledger, api, view)
    install_api(app, api)
    console = stderr()
    console.print(f"flightledger dashboard on http://{host}:{port}/ (API: /api/v1, /docs)")
    if users is None:
        console.print(
            f"local operator mode: one operator with all permissions on school {cli.school} "
            f"(set {USERS_FILE_VARIABLE} for sign-in)"
        )
    if service is None:
        console.print(f"QuickBooks connect/test is unavailable: {why}")
    log.info("web_server_started", host=host, port=port, local=users is None)
    # access_log off: at log level warning its lines are dropped anyway, but uvicorn formats
    # each request's client address and path for it first; httptools and uvloop (dependencies)
    # are picked by uvicorn's "auto": less CPU per request than h11 and asyncio's own loop
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False)


def _verdict(ledger: FlightLedger, view: Any) -> dict[str, Any]:
    """`audit verify`'s verdict as a document."""
    from workers.projector import verify_audit_chain

    verdict = verify_audit_chain(ledger, view)
    return {
        "ok": verdict.ok,
        "events": verdict.events,
        "head": verdict.head,
        "message": verdict.message,
    }


def register(app: typer.Typer) -> None:
    """Add `serve`."""
    app.command("serve")(serve)
