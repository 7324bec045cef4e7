"""Wiring of the QuickBooks adapter: settings, vault, gateways with Connection hooks, and the
connection use cases (connect, callback, test, disconnect, status) behind the CLI and web."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import structlog
from eventsourcing.persistence import IntegrityError

from adapters.persistence import DatabaseUrl, ensure_schema, parse_database_url
from adapters.quickbooks.gateway import GatewayHooks, QuickBooksGateway, RealmSession
from adapters.quickbooks.oauth import (
    STATE_TTL,
    OAuthClient,
    QboAuthError,
    new_state,
    oauth_client,
)
from adapters.quickbooks.ratelimit import BudgetLimits, RateBudget
from adapters.quickbooks.settings import SIMULATOR, QboSettings
from adapters.secret_key import default_key_file, load_secret_key
from adapters.vault import TokenSet, TokenVault
from domain.application import SYSTEM, FlightLedger
from domain.connection import (
    CompanySwitch,
    CompanySwitchRefused,
    Connection,
    ConnectionState,
    HeldRecord,
)
from domain.financial_event import FinancialEvent, Status
from domain.pill import status_document
from domain.ports import Clock, CompanyInfo, ConnectionCheck, ReasonCode, TokenExpiries
from domain.preflight import NOT_CONNECTED_MESSAGE, RECONNECT_MESSAGE
from projections.view import ProjectedView

log = structlog.get_logger(__name__)

APP_SCOPE = "_app"  # vault "school" holding app-wide secrets (the client secret)
CONNECTED_VERIFYING = "QuickBooks connected! Verifying..."
STATE_MISMATCH = (
    "The QuickBooks callback does not match a connection started here (unknown, used or expired "
    "state): run 'connection connect' again"
)


class ConnectionStepRefused(RuntimeError):
    """A connection step was refused; the message is for the operator."""


class CompanySwitchUnconfirmed(ConnectionStepRefused, CompanySwitchRefused):
    """Another company than the one holding the invoices, not confirmed (CLI and dashboard)."""


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


def update_connection(
    ledger: FlightLedger, school: str, change: Callable[[Connection], None]
) -> None:
    """Load, change and save the school's Connection; retry once on a version conflict."""
    for attempt in (1, 2):
        connection = ledger.connection(school)
        change(connection)
        try:
            ledger.save(connection)
            return
        except IntegrityError:
            if attempt == 2:
                raise


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

    def refreshed(expiries: TokenExpiries) -> None:
        update_connection(
            ledger,
            school,
            lambda c: c.record_refresh(
                access_expires_at=expiries.access_expires_at,
                refresh_expires_at=expiries.refresh_expires_at,
                hard_expires_at=expiries.hard_expires_at,
                at=ledger.clock.now(),
            ),
        )

    def expired(message: str) -> None:
        update_connection(
            ledger, school, lambda c: c.expire(message=message, at=ledger.clock.now())
        )

    def auth_failed(message: str) -> None:
        update_connection(
            ledger, school, lambda c: c.record_failure(message=message, at=ledger.clock.now())
        )

    tokens = vault.get_tokens(school)
    session = RealmSession(
        settings=settings,
        school=school,
        tokens=vault,
        oauth=oauth,
        budget=budget or budget_for(settings, tokens.realm if tokens else school),
        hooks=GatewayHooks(on_refreshed=refreshed, on_expired=expired, on_auth_failed=auth_failed),
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


MAY_BE_IN_OLD_COMPANY = (
    Status.UNCERTAIN.value,
    Status.SYNCING.value,
    Status.PENDING.value,
    Status.RETRYING.value,
    Status.FAILED.value,
    Status.ACTION_REQUIRED.value,
)
_PUSH_NOT_ANSWERED = frozenset(
    {ReasonCode.AUTH_EXPIRED, ReasonCode.AUTH_FAILED, ReasonCode.NOT_CONNECTED}
)


def may_be_in_old_company(event: FinancialEvent) -> bool:
    """A push of this event was sent and its outcome may have been a create: uncertain or
    syncing, or waiting (pending/retrying/failed/auth) after a push whose answer was not a
    definite refusal."""
    if event.attempts == 0:
        return False
    if event.status in (Status.UNCERTAIN, Status.SYNCING):
        return True
    if event.status == Status.ACTION_REQUIRED:
        return event.reason_code in _PUSH_NOT_ANSWERED
    return event.status in (Status.PENDING, Status.RETRYING, Status.FAILED)


def connection_status(ledger: FlightLedger, school: str, now: datetime) -> dict[str, Any]:
    """CLI.md's connection status document."""
    return status_document(ledger.connection(school), now)


@dataclass
class CallbackResult:
    """The connection check after a callback, with the lines shown along the way."""

    check: ConnectionCheck
    steps: list[str]


class ConnectionService:
    """Connect, complete the callback, test, disconnect and report a school's QBO connection."""

    def __init__(
        self,
        ledger: FlightLedger,
        vault: TokenVault,
        settings: QboSettings,
        *,
        oauth: OAuthClient | None = None,
    ) -> None:
        self.ledger = ledger
        self.vault = vault
        self.settings = settings
        self._oauth = oauth

    @property
    def oauth(self) -> OAuthClient:
        """The cached OAuth client of these settings."""
        if self._oauth is None:
            self._oauth = oauth_client(self.settings)
        return self._oauth

    def gateway(self, school: str) -> QuickBooksGateway:
        """The school's gateway."""
        return gateway_for(self.ledger, self.vault, self.settings, school, oauth=self.oauth)

    def connect(self, school: str) -> tuple[str, str]:
        """Start the OAuth flow: (validated authorization URL, state)."""
        state = new_state()
        url = self.oauth.authorization_url(state)  # raises UntrustedAuthorizationUrl
        self.vault.put_state(school, state, ttl=STATE_TTL, now=self.ledger.clock.now())
        if self.settings.client_secret:
            self.vault.put_secret(
                APP_SCOPE, _client_secret_name(self.settings.client_id), self.settings.client_secret
            )
        log.info("qbo_connect_started", school=school)
        return url, state

    def callback(
        self,
        school: str,
        redirect_url: str,
        operator: str = SYSTEM,
        *,
        switch_company: bool = False,
    ) -> ConnectionCheck:
        """Complete the flow from the redirect URL; then test the connection."""
        return self.callback_steps(
            school, redirect_url, operator, switch_company=switch_company
        ).check

    def callback_steps(
        self,
        school: str,
        redirect_url: str,
        operator: str = SYSTEM,
        *,
        switch_company: bool = False,
    ) -> CallbackResult:
        """callback(), also returning the human lines ('QuickBooks connected! Verifying...')."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(redirect_url).query).items()}
        if "error" in query:
            raise ConnectionStepRefused(
                f"QuickBooks did not authorize the connection: {query['error']}"
                + (f" — {query['error_description']}" if query.get("error_description") else "")
            )
        state, code, realm = query.get("state", ""), query.get("code", ""), query.get("realmId", "")
        if not state or not self.vault.consume_state(school, state, now=self.ledger.clock.now()):
            log.warning("qbo_callback_refused", school=school, reason="state")
            raise ConnectionStepRefused(STATE_MISMATCH)
        if not code or not realm:
            raise ConnectionStepRefused("The QuickBooks callback URL carries no code or realmId")
        now = self.ledger.clock.now()
        try:
            tokens = self.oauth.exchange(code, realm, now)
        except QboAuthError as exc:
            raise ConnectionStepRefused(
                f"QuickBooks refused the authorization code: {exc}"
            ) from None
        company = self._confirm_realm(school, tokens)
        previous = self.ledger.connection(school)
        switching = bool(previous.realm) and previous.realm != tokens.realm
        if switching:
            self._check_switch(school, previous, tokens.realm, company, switch_company)
        with self.vault.refresh_lock(school):  # not while a worker refreshes the old set
            self.vault.put_tokens(school, tokens)
        if switching:
            self._hold_events_of_old_company(school, previous, company, operator)
        update_connection(
            self.ledger,
            school,
            lambda c: c.connect(
                realm=tokens.realm,
                company=company.company_name,
                country=company.country,
                access_expires_at=tokens.access_expires_at,
                refresh_expires_at=tokens.refresh_expires_at,
                hard_expires_at=tokens.hard_expires_at,
                actor=operator,
                at=now,
            ),
        )
        log.info("qbo_connected", school=school, realm=tokens.realm)
        check = self.test(school, operator)  # also reads the company's preferences
        return CallbackResult(check=check, steps=[CONNECTED_VERIFYING, check.message])

    def _confirm_realm(self, school: str, tokens: TokenSet) -> CompanyInfo:
        """CompanyInfo of the callback's realmId read with the new tokens (not yet stored).

        A realmId the tokens do not open (a tampered or mixed-up callback) is refused, and the
        school's stored tokens stay as they were.
        """
        session = RealmSession(
            settings=self.settings,
            school=school,
            tokens=_NewTokens(tokens),
            oauth=self.oauth,
            budget=budget_for(self.settings, tokens.realm),
            now=self.ledger.clock.now,
        )
        try:
            info = QuickBooksGateway(session).company_info()
        finally:
            session.close()
        if isinstance(info, CompanyInfo):
            return info
        log.warning("qbo_callback_refused", school=school, reason="realm", realm=tokens.realm)
        raise ConnectionStepRefused(
            f"QuickBooks did not open company {tokens.realm} with the new authorization: "
            f"{info.message}. Nothing was changed; run 'connection connect' again."
        )

    def _check_switch(
        self,
        school: str,
        previous: Connection,
        realm: str,
        company: CompanyInfo,
        confirmed: bool,
    ) -> None:
        """Refuse connecting another company while invoices are in the old one, unless
        an admin confirmed the switch; the refusal names what may already be in the old one."""
        if confirmed or not self._has_invoices(school):
            return
        switch = CompanySwitch(
            old_company=previous.company or "another QuickBooks company",
            old_realm=previous.realm or "",
            new_company=company.company_name or "another company",
            new_realm=realm,
            may_be_in_old=tuple(
                HeldRecord(e.reference, e.status.value) for e in self._maybe_in_old_company(school)
            ),
        )
        held = switch.may_be_in_old
        shown = ", ".join(h.reference for h in held[:10]) + (" …" if len(held) > 10 else "")
        log.warning("qbo_callback_refused", school=school, reason="company_switch", realm=realm)
        raise CompanySwitchUnconfirmed(
            f"This school's invoices are in {switch.old_company} (realm {previous.realm}); you "
            f"connected {switch.new_company} (realm {realm}). Nothing was changed. "
            + (
                f"{len(held)} record(s) may already be in {switch.old_company} (a push was sent "
                f"and no definite answer came back): {shown}; after a switch they wait under "
                "company_switched for you to check them there. "
                if held
                else ""
            )
            + "Connect the same company again, or, to move this school to the new company, run "
            "'connection connect' and complete it with 'connection callback URL --switch-company'.",
            switch,
        )

    def _view(self) -> ProjectedView:
        from adapters.views import open_view
        from workers.projector import Projector

        view = open_view(self.vault.db)
        Projector(self.ledger, view).catch_up()
        return view

    def _has_invoices(self, school: str) -> bool:
        view = self._view()
        try:
            return bool(view.list(school, statuses=[Status.SYNCED.value], limit=1))
        finally:
            view.close()

    def _maybe_in_old_company(self, school: str) -> list[FinancialEvent]:
        """The school's records that may already exist in the company it is leaving."""
        view = self._view()
        try:
            rows = view.list(school, statuses=list(MAY_BE_IN_OLD_COMPANY))
        finally:
            view.close()
        events = (self.ledger.financial_event(row.id) for row in rows)
        return [e for e in events if may_be_in_old_company(e)]

    def _hold_events_of_old_company(
        self, school: str, previous: Connection, company: CompanyInfo, operator: str
    ) -> int:
        """Events that may already exist in the old company go to action_required
        (company_switched): never created again in the new one without an operator's retry."""
        message = (
            f"QuickBooks was switched from {previous.company or 'the old company'} (realm "
            f"{previous.realm}) to {company.company_name or 'a new company'}; this "
            "record may already be in the old company. Check there, then Dismiss it or press "
            "Retry Failed to create it in the new company"
        )
        held: list[FinancialEvent] = []
        now = self.ledger.clock.now()
        for event in self._maybe_in_old_company(school):
            event.require_action(
                reason_code=ReasonCode.COMPANY_SWITCHED,
                message=message,
                missing=[],
                actor=operator,
                at=now,
            )
            if event.pending_events:
                held.append(event)
        if held:
            self.ledger.save(*held)
        log.info("qbo_company_switched", school=school, held=len(held))
        return len(held)

    def test(self, school: str, operator: str = SYSTEM) -> ConnectionCheck:
        """A live CompanyInfo read, recorded as ConnectionTested."""
        connection = self.ledger.connection(school)
        if connection.state in (ConnectionState.NEVER, ConnectionState.DISCONNECTED):
            return ConnectionCheck(
                ok=False, message=NOT_CONNECTED_MESSAGE, reason_code=ReasonCode.NOT_CONNECTED
            )
        if connection.state == ConnectionState.EXPIRED:
            # Nothing is asked of QuickBooks: record no test, so QuickBooks' own message
            # (invalid_grant ...) stays the connection's last error instead of our sentence.
            return ConnectionCheck(
                ok=False, message=RECONNECT_MESSAGE, reason_code=ReasonCode.AUTH_EXPIRED
            )
        gateway = self.gateway(school)
        check = gateway.test_connection()
        company = check.company
        update_connection(
            self.ledger,
            school,
            lambda c: c.record_test(
                ok=check.ok,
                company=company.company_name if company else None,
                country=company.country if company else None,
                message=check.message,
                actor=operator,
                at=self.ledger.clock.now(),
            ),
        )
        log.info("qbo_connection_tested", school=school, ok=check.ok)
        if check.ok:
            self._read_preferences(school, gateway)
        return check

    def _read_preferences(self, school: str, gateway: QuickBooksGateway) -> None:
        """Record SalesFormsPrefs.CustomTxnNumbers (off: QBO will not keep our DocNumbers)."""
        custom = gateway.custom_txn_numbers()
        if custom is None:
            return
        update_connection(
            self.ledger,
            school,
            lambda c: c.record_preferences(custom_txn_numbers=custom, at=self.ledger.clock.now()),
        )
        if not custom:
            log.warning("qbo_custom_txn_numbers_off", school=school)

    def disconnect(self, school: str, operator: str = SYSTEM) -> bool:
        """Revoke at Intuit (best effort), forget the tokens, record Disconnected."""
        tokens = self.vault.get_tokens(school)
        if tokens is not None:
            try:
                self.oauth.revoke(tokens.refresh_token)
            except QboAuthError as exc:
                log.warning("qbo_revoke_failed", school=school, reason=str(exc))
            with self.vault.refresh_lock(school):
                self.vault.delete_tokens(school)
        connection = self.ledger.connection(school)
        if connection.state != ConnectionState.NEVER:
            update_connection(
                self.ledger,
                school,
                lambda c: c.disconnect(actor=operator, at=self.ledger.clock.now()),
            )
        log.info("qbo_disconnected", school=school)
        return True

    def status(self, school: str, now: datetime | None = None) -> dict[str, Any]:
        """CLI.md's connection status document."""
        return connection_status(self.ledger, school, now or self.ledger.clock.now())

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
