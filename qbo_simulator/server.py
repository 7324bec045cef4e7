"""QboSimulator: the HTTP server (stdlib ThreadingHTTPServer) and its in-process controls."""

from __future__ import annotations

import base64
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from qbo_simulator.admin import AdminRoutes
from qbo_simulator.api import AccountingApi, Stats
from qbo_simulator.company import Company
from qbo_simulator.config import SimulatorConfig
from qbo_simulator.envelopes import Response, json_response
from qbo_simulator.faults import FaultInjector
from qbo_simulator.limits import Limits, RateLimiter
from qbo_simulator.oauth import TokenAuthority, discovery_document
from qbo_simulator.seed import seed_entities

log = structlog.get_logger(__name__)
_STATUSES = {int(s) for s in HTTPStatus}
MAX_BODY = 10 * 1024 * 1024
DISCOVERY_PATHS = (
    "/.well-known/openid_configuration",
    "/.well-known/openid_sandbox_configuration",
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (killed worker, timeout) is normal here: no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class QboSimulator:
    """A local QuickBooks Online: OAuth + accounting API + /_sim controls over loopback HTTP."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or SimulatorConfig()
        cfg = self.config
        self._lock = threading.RLock()
        self._companies: dict[str, Company] = {}
        self._next_realm = int(cfg.realm) + 1 if cfg.realm.isdigit() else 9130350000000002
        self._connections = 0
        self.add_company(cfg.realm, cfg.company_name)
        self.authority = TokenAuthority(cfg, self._realm_for_connection, wall_clock)
        limits = Limits(
            per_minute=cfg.requests_per_minute,
            per_second=cfg.requests_per_second,
            concurrent=cfg.max_concurrent,
            batch_per_minute=cfg.batch_requests_per_minute,
            minute_seconds=cfg.minute_seconds,
        )
        self.limiter = RateLimiter(limits, clock)
        self.injector = FaultInjector(cfg.fault_rate, cfg.fault_seed)
        self.stats = Stats()
        self._stopping = threading.Event()
        self.api = AccountingApi(
            company=self.company_or_none,
            authority=self.authority,
            limiter=self.limiter,
            injector=self.injector,
            stats=self.stats,
            sleep=self._sleep,
            max_sleep=cfg.max_sleep_seconds,
            max_batch_items=cfg.max_batch_items,
        )
        self.admin = AdminRoutes(self)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle
    def start(self) -> QboSimulator:
        """Bind (port 0 picks a free port) and serve in a background daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.config.host, self.config.port), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
            name="qbo-simulator",
        )  # fmt: skip
        self._thread.start()
        log.info("qbo_simulator_started", url=self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; sleeping requests wake up."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> QboSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        if self._server is None:
            raise RuntimeError("simulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8400."""
        host = self.config.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def discovery_url(self) -> str:
        """The discovery document URL (intuitlib's ``environment``)."""
        return f"{self.url}/.well-known/openid_configuration"

    @property
    def api_base(self) -> str:
        """The value for python-quickbooks' ``api_url_v3`` (``<url>/v3``)."""
        return f"{self.url}/v3"

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(max(0.0, seconds))

    # ----- companies
    def add_company(self, realm: str | None = None, name: str | None = None) -> str:
        """Create a seeded company (next free realm id when none given); returns its realm."""
        with self._lock:
            if realm is None:
                while str(self._next_realm) in self._companies:
                    self._next_realm += 1
                realm = str(self._next_realm)
                self._next_realm += 1
            if realm not in self._companies:
                number = len(self._companies) + 1
                label = name or (
                    self.config.company_name if number == 1 else
                    f"{self.config.company_name} {number}"
                )  # fmt: skip
                self._companies[realm] = Company(
                    realm, label, self.config.country,
                    dup_check=self.config.custom_txn_numbers_dup_check,
                )  # fmt: skip
            return realm

    def company_or_none(self, realm: str) -> Company | None:
        """The company of a realm, or None."""
        with self._lock:
            return self._companies.get(realm)

    def company(self, realm: str | None = None) -> Company:
        """The company of a realm (default realm when None); KeyError when unknown."""
        with self._lock:
            return self._companies[realm or self.config.realm]

    def realms(self) -> list[str]:
        """Every realm, in creation order."""
        with self._lock:
            return list(self._companies)

    def _realm_for_connection(self, params: dict[str, str]) -> str:
        with self._lock:
            self._connections += 1
            hint = params.get("realm_hint")
            if hint:
                return self.add_company(hint)
            if self.config.one_realm_per_connection and self._connections > 1:
                return self.add_company()
            return self.config.realm

    # ----- inspection and control
    def invoices(self, realm: str | None = None) -> list[dict[str, Any]]:
        """Every invoice created (all realms unless one is given), in creation order."""
        with self._lock:
            companies = list(self._companies.values())
        return [r for c in companies if realm in (None, c.realm) for r in c.invoice_rows()]

    def invoice_count(self) -> int:
        """How many invoices were created in all realms (cheap: benches poll it)."""
        with self._lock:
            companies = list(self._companies.values())
        return sum(c.invoice_count() for c in companies)

    def credit_memos(self, realm: str | None = None) -> list[dict[str, Any]]:
        """Every credit memo created, in creation order."""
        with self._lock:
            companies = list(self._companies.values())
        return [dict(r) for c in companies if realm in (None, c.realm) for r in c.credit_log]

    def refunds(self, realm: str | None = None) -> list[dict[str, Any]]:
        """Every refund receipt created, in creation order."""
        with self._lock:
            companies = list(self._companies.values())
        return [dict(r) for c in companies if realm in (None, c.realm) for r in c.refund_log]

    def payments(self, realm: str | None = None) -> list[dict[str, Any]]:
        """Every payment created (all realms unless one is given), in creation order."""
        with self._lock:
            companies = list(self._companies.values())
        return [dict(r) for c in companies if realm in (None, c.realm) for r in c.payment_log]

    def customers(self, realm: str | None = None) -> list[dict[str, Any]]:
        """Every customer created through the API (all realms unless one is given), in order."""
        with self._lock:
            companies = list(self._companies.values())
        return [dict(r) for c in companies if realm in (None, c.realm) for r in c.customer_log]

    def add_customer(
        self,
        display_name: str,
        email: str | None = None,
        *,
        active: bool = True,
        realm: str | None = None,
    ) -> str:
        """Put a customer into a company as existing data (no name check); returns its Id."""
        return str(self.company(realm).add_customer(display_name, email, active=active)["Id"])

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change fault settings (names in faults.py); returns the new settings."""
        changes = dict(changes)
        if changes.pop("expire_access_tokens_now", False):
            self.authority.expire_access_tokens()
        if changes.pop("revoke_refresh_tokens", False):
            self.authority.revoke_refresh_tokens()
        if "custom_txn_numbers" in changes:  # a company preference, kept until reset
            enabled = bool(changes.pop("custom_txn_numbers"))
            for realm in self.realms():
                self.company(realm).custom_txn_numbers = enabled
        self.injector.update(changes)
        if "inactive_items" in changes or "inactive_customers" in changes:
            self._apply_inactive()
        return self.faults()

    def faults(self) -> dict[str, Any]:
        """The current fault settings as JSON."""
        return self.injector.snapshot()

    def _apply_inactive(self) -> None:
        settings = self.injector.snapshot()
        seed = seed_entities()
        for company in [self.company(r) for r in self.realms()]:
            for entity, key in (("Item", "inactive_items"), ("Customer", "inactive_customers")):
                for entity_id, record in seed[entity].items():
                    active = bool(record["Active"]) and entity_id not in settings[key]
                    company.set_active(entity, entity_id, active)

    def set_active(
        self, entity: str, entity_id: str, active: bool, realm: str | None = None
    ) -> bool:
        """Activate/deactivate a list record in one realm (default) or all (realm="*")."""
        targets = self.realms() if realm == "*" else [realm or self.config.realm]
        return all(self.company(r).set_active(entity, entity_id, active) for r in targets)

    def delete_entity(self, entity: str, entity_id: str, realm: str | None = None) -> None:
        """Delete a record (later references fail with 2500)."""
        targets = self.realms() if realm == "*" else [realm or self.config.realm]
        for r in targets:
            self.company(r).delete(entity, entity_id)

    def reset(self, *, clear_tokens: bool = False) -> None:
        """Back to seed data in every realm; faults, limits and stats cleared; tokens kept."""
        for realm in self.realms():
            self.company(realm).reset()
        self.injector.reset()
        self.limiter.reset()
        self.stats.clear()
        if clear_tokens:
            self.authority.clear()

    def stats_snapshot(self) -> dict[str, Any]:
        """Requests served, throttled (by reason), faults injected and replays, per realm."""
        return {"realms": self.stats.snapshot(), "companies": self.realms()}

    def connect(
        self, realm: str | None = None, redirect_uri: str = "http://localhost/cb"
    ) -> dict[str, Any]:
        """In-process OAuth (no HTTP): returns realm, access_token, refresh_token, expiries."""
        params = {
            "client_id": self.config.client_id, "response_type": "code",
            "scope": "com.intuit.quickbooks.accounting", "redirect_uri": redirect_uri,
            "state": "in-process", **({"realm_hint": realm} if realm else {}),
        }  # fmt: skip
        location = self.authority.authorize(params).headers["Location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        basic = base64.b64encode(
            f"{self.config.client_id}:{self.config.client_secret}".encode()
        ).decode()
        body = f"grant_type=authorization_code&code={query['code']}&redirect_uri={redirect_uri}"
        answer = self.authority.token({"authorization": f"Basic {basic}"}, body.encode()).json()
        return {"realm": query["realmId"], **answer}

    # ----- HTTP dispatch
    def dispatch(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        client_gone: Callable[[], bool] | None = None,
    ) -> Response:
        """Answer one HTTP request (headers with lowercase names)."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if path in DISCOVERY_PATHS and method == "GET":
            return json_response(
                200,
                discovery_document(
                    self.url, authorization_endpoint=self.config.authorization_endpoint
                ),
            )
        if path == "/connect/oauth2" and method == "GET":
            return self.authority.authorize(params)
        if path == "/oauth2/v1/tokens/bearer" and method == "POST":
            return self.authority.token(headers, body)
        if path == "/v2/oauth2/tokens/revoke" and method == "POST":
            return self.authority.revoke(headers, body)
        if path == "/oauth2/v1/certs" and method == "GET":
            return json_response(200, {"keys": []})
        segments = [s for s in path.split("/") if s]
        if len(segments) >= 4 and segments[:2] == ["v3", "company"]:
            return self.api.handle(
                method,
                segments[2],
                segments[3:],
                params=params,
                headers=headers,
                body=body,
                client_gone=client_gone,
            )
        if segments and segments[0] == "_sim":
            return self.admin.handle(method, segments[1:], params, body)
        return json_response(404, {"error": "not_found", "path": path})


def _handler_for(sim: QboSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "QboSimulator/1.0"
        timeout = 30
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            if sim.config.log_requests:
                log.debug("qbo_simulator_request", line=format % args)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(json_response(413, {"error": "body too large"}))
                return
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                response = sim.dispatch(
                    self.command, self.path, headers, body, client_gone=self._client_gone
                )
            except Exception:
                log.exception("qbo_simulator_failed", path=urlsplit(self.path).path)
                response = json_response(500, {"error": "simulator failure"})
            if response.action == "reset":
                self._reset()
                return
            self._send(response)

        def _client_gone(self) -> bool:
            """The client closed its end (it is waiting for our answer, so EOF means gone).

            poll(), not select(): select() refuses descriptors above 1023 (ValueError), and a
            simulator holding a thousand keep-alive connections (500 realms, two workers)
            answered every request on those with HTTP 500.
            """
            try:
                watch = select.poll()
                watch.register(self.connection, select.POLLIN)
                readable = bool(watch.poll(0))
                return readable and self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:  # reset by the peer
                return True

        def _reset(self) -> None:
            self.close_connection = True
            try:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            except OSError:
                pass

        def _send(self, response: Response) -> None:
            phrase = HTTPStatus(response.status).phrase if response.status in _STATUSES else ""
            headers = {
                "Server": self.version_string(),
                "Date": self.date_time_string(),
                **response.headers,
                "Content-Type": response.content_type,
                "Content-Length": str(len(response.body)),
                "intuit_tid": f"sim-{threading.get_ident()}",
            }
            if self.close_connection:
                headers["Connection"] = "close"
            head = f"HTTP/1.1 {response.status} {phrase}\r\n" + "".join(
                f"{name}: {value}\r\n" for name, value in headers.items()
            )
            self.log_request(response.status)
            try:
                # One write: headers and body in one segment (no Nagle/delayed-ACK stalls).
                self.wfile.write(head.encode("latin-1") + b"\r\n" + response.body)
            except OSError:
                self.close_connection = True

        do_GET = _serve
        do_POST = _serve
        do_PUT = _serve
        do_DELETE = _serve

    return Handler
