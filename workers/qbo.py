"""The composition root of the QuickBooks connection: settings, vault, gateways whose token
changes are recorded on the school's Connection, and services.connection's use cases wired to
intuitlib's OAuth client, the vault and QuickBooks (`ConnectionService`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import requests

from adapters.persistence import DatabaseUrl, ensure_schema, parse_database_url
from adapters.quickbooks.gateway import GatewayHooks, QuickBooksGateway, RealmSession
from adapters.quickbooks.oauth import OAuthClient, oauth_client, read_callback
from adapters.quickbooks.ratelimit import BudgetLimits, RateBudget
from adapters.quickbooks.settings import SIMULATOR, QboSettings
from adapters.secret_key import default_key_file, load_secret_key
from adapters.vault import TokenVault
from domain.application import SYSTEM, FlightLedger
from domain.ports import Clock, CompanyInfo, ConnectionCheck, PushOutcome, TokenSet
from projections.view import ProjectedView
from services.connection import (
    CallbackResult,
    CompanySwitchUnconfirmed,
    ConnectionStepRefused,
    ConnectionUseCases,
    connection_status,
    may_be_in_old_company,
    record_auth_failure,
    record_expired,
    record_refresh,
    update_connection,
)

__all__ = [
    "CallbackResult",
    "CompanySwitchUnconfirmed",
    "ConnectionService",
    "ConnectionStepRefused",
    "connection_status",
    "may_be_in_old_company",
    "update_connection",
]


APP_SCOPE = "_app"  # vault "school" holding app-wide secrets (the client secret)


def _client_secret_name(client_id: str) -> str:
    return f"client_secret:{client_id}"


def qbo_settings_from_env(env: Mapping[str, str], vault: TokenVault | None = None) -> QboSettings:
    """QboSettings from FLIGHTLEDGER_QBO_*; a missing client secret is read from the vault."""
    settings = QboSettings.from_env(env)
    if not settings.client_secret and settings.client_id and vault is not None:
        stored = vault.get_secret(APP_SCOPE, _client_secret_name(settings.client_id))
        if stored:
            settings = QboSettings(**{**settings.__dict__, "client_secret": stored})
    return settings


def open_vault(db: DatabaseUrl | str, env: Mapping[str, str], create_key: bool) -> TokenVault:
    """The token vault in the log's database (the key from env or the local key file)."""
    parsed = parse_database_url(db) if isinstance(db, str) else db
    ensure_schema(parsed)
    key = load_secret_key(env, default_key_file(parsed), create_key)
    return token_vault(parsed, key)


def token_vault(db: DatabaseUrl, key: bytes, clock: Clock | None = None) -> TokenVault:
    """The vault of the log's database: PostgresTokenVault or SqliteTokenVault."""
    if db.is_postgres:
        from adapters.vault_postgres import PostgresTokenVault

        return PostgresTokenVault(db, key, clock)
    from adapters.vault_sqlite import SqliteTokenVault

    return SqliteTokenVault(db, key, clock)


def connection_service(
    ledger: FlightLedger, database: DatabaseUrl | str, env: Mapping[str, str]
) -> ConnectionService:
    """The school's connection use cases, configured from the environment (the simulator
    environment creates its local key file; a real one must be given its key)."""
    environment = env.get("FLIGHTLEDGER_QBO_ENVIRONMENT", "").strip().lower()
    vault = open_vault(database, env, create_key=environment == SIMULATOR)
    return ConnectionService(ledger, vault, qbo_settings_from_env(env, vault))


_budgets: dict[tuple[str, str], RateBudget] = {}
_budgets_lock = threading.Lock()


def budget_for(settings: QboSettings, realm_key: str) -> RateBudget:
    """The process-wide rate budget of one realm at one API base."""
    with _budgets_lock:
        key = (settings.api_base, realm_key)
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = RateBudget(
                BudgetLimits(minute_seconds=settings.minute_seconds)
            )
        return budget


def gateway_for(
    ledger: FlightLedger,
    vault: TokenVault,
    settings: QboSettings,
    school: str,
    *,
    oauth: OAuthClient | None = None,
    budget: RateBudget | None = None,
    stopping: Callable[[], bool] | None = None,
) -> QuickBooksGateway:
    """A gateway whose token changes are recorded on the school's Connection.

    `stopping`: the worker is shutting down; retries stop and their waits end early.
    """

    tokens = vault.get_tokens(school)
    session = RealmSession(
        settings=settings,
        school=school,
        tokens=vault,
        oauth=oauth,
        budget=budget or budget_for(settings, tokens.realm if tokens else school),
        hooks=GatewayHooks(
            on_refreshed=lambda expiries: record_refresh(ledger, school, expiries),
            on_expired=lambda message: record_expired(ledger, school, message),
            on_auth_failed=lambda message: record_auth_failure(ledger, school, message),
        ),
        now=ledger.clock.now,
        stopping=stopping,
    )
    return QuickBooksGateway(session)


class _NewTokens:
    """A TokenStore holding one token set in memory: the callback's, before it is stored."""

    def __init__(self, tokens: TokenSet) -> None:
        self._tokens = tokens
        self._lock = threading.Lock()

    def get_tokens(self, school: str) -> TokenSet | None:
        """The token set."""
        return self._tokens

    def put_tokens(self, school: str, tokens: TokenSet) -> None:
        """Keep a refreshed set (memory only)."""
        self._tokens = tokens

    @contextmanager
    def refresh_lock(self, school: str) -> Iterator[None]:
        """A thread lock (nobody else knows these tokens)."""
        with self._lock:
            yield


class _Companies:
    """CompanyDirectory on QuickBooks: CompanyInfo read with new tokens, a school's gateway."""

    def __init__(self, service: ConnectionService) -> None:
        self.service = service

    def company_with(self, school: str, tokens: TokenSet) -> CompanyInfo | PushOutcome:
        """CompanyInfo of tokens.realm through a session on these tokens only."""
        settings = self.service.settings
        session = RealmSession(
            settings=settings,
            school=school,
            tokens=_NewTokens(tokens),
            oauth=self.service.oauth,
            budget=budget_for(settings, tokens.realm),
            now=self.service.ledger.clock.now,
        )
        try:
            return QuickBooksGateway(session).company_info()
        finally:
            session.close()

    def probe(self, school: str) -> QuickBooksGateway:
        """The school's gateway (its token changes recorded on the Connection)."""
        return self.service.gateway(school)


class ConnectionService(ConnectionUseCases):
    """services.connection's use cases wired to QuickBooks: intuitlib's OAuth client of these
    settings, this vault, QuickBooks gateways and the log's stored view."""

    def __init__(
        self,
        ledger: FlightLedger,
        vault: TokenVault,
        settings: QboSettings,
        *,
        oauth: OAuthClient | None = None,
    ) -> None:
        self.settings = settings
        self._client = oauth
        super().__init__(
            ledger,
            vault=vault,
            oauth=lambda: self.oauth,
            read_callback=read_callback,
            companies=_Companies(self),
            open_view=self._caught_up_view,
            on_connect_started=self._keep_client_secret,
        )
        self.vault: TokenVault = vault

    @property
    def oauth(self) -> OAuthClient:
        """The cached OAuth client of these settings."""
        if self._client is None:
            self._client = oauth_client(self.settings)
        return self._client

    def gateway(self, school: str) -> QuickBooksGateway:
        """The school's gateway."""
        return gateway_for(self.ledger, self.vault, self.settings, school, oauth=self.oauth)

    def _keep_client_secret(self) -> None:
        """The worker reads the client secret from the vault when its environment has none."""
        if self.settings.client_secret:
            self.vault.put_secret(
                APP_SCOPE, _client_secret_name(self.settings.client_id), self.settings.client_secret
            )

    def _caught_up_view(self) -> ProjectedView:
        from adapters.views import open_view
        from workers.projector import Projector

        view = open_view(self.vault.db)
        Projector(self.ledger, view).catch_up()
        return view

    def connect_simulator(self, school: str, operator: str = SYSTEM) -> ConnectionCheck:
        """The whole flow against a local simulator (auto-consent): for the demo and tests."""
        url, _state = self.connect(school)
        answer = requests.get(url, allow_redirects=False, timeout=self.settings.request_timeout)
        location = answer.headers.get("Location")
        if answer.status_code != 302 or not location:
            raise ConnectionStepRefused(
                f"the simulator did not redirect back (HTTP {answer.status_code}: "
                f"{answer.text[:200]})"
            )
        return self.callback(school, location, operator)
