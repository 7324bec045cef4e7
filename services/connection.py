"""The QuickBooks connection use cases: connect, callback, test, disconnect, status, and what a
gateway's token refresh records.

`flightledger connection ...`, the dashboard's QuickBooks card (adapters/web/routes/connection.py)
and `GET /api/v1/connection`, `POST /api/v1/connection/test` all call `ConnectionUseCases`; the
sync worker's gateways record their refreshes through `record_refresh` / `record_expired` /
`record_auth_failure`. What the use cases need from outside is a port of domain/ports.py: the
OAuth client (`OAuthPort`) and how its redirect reads (`OAuthCallback`), the token vault
(`ConnectionVault`), who a token set opens (`CompanyDirectory`) and the financial-event view.
workers/qbo.py (the composition root) wires intuitlib's client, the vault and the QuickBooks
gateway in. The sentences shown for "not connected" and "Reconnect" are domain.preflight's, the
trusted-URL check and its sentences adapters.authorization_url's (the OAuth adapter applies it).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from eventsourcing.persistence import IntegrityError

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
from domain.ports import (
    AuthorizationFailed,
    CompanyDirectory,
    CompanyInfo,
    CompanyProbe,
    ConnectionCheck,
    ConnectionVault,
    OAuthCallback,
    OAuthPort,
    ReasonCode,
    TokenExpiries,
    TokenSet,
)
from domain.preflight import NOT_CONNECTED_MESSAGE, RECONNECT_MESSAGE
from projections.view import ProjectedView

log = structlog.get_logger(__name__)

STATE_TTL = timedelta(minutes=10)
CONNECTED_VERIFYING = "QuickBooks connected! Verifying..."
STATE_MISMATCH = (
    "The QuickBooks callback does not match a connection started here (unknown, used or expired "
    "state): run 'connection connect' again"
)


class ConnectionStepRefused(RuntimeError):
    """A connection step was refused; the message is for the operator."""


class CompanySwitchUnconfirmed(ConnectionStepRefused, CompanySwitchRefused):
    """Another company than the one holding the invoices, not confirmed (CLI and dashboard)."""


class ConnectionServicePort(Protocol):
    """The connection use cases the dashboard and the API call (ConnectionUseCases)."""

    def connect(self, school: str) -> tuple[str, str]:
        """Start the OAuth flow: (authorization_url, state)."""
        ...

    def callback(
        self, school: str, redirect_url: str, operator: str, *, switch_company: bool = False
    ) -> ConnectionCheck:
        """Complete the flow from the URL QuickBooks redirected to (switch_company: an admin
        confirmed connecting another company than the one holding the school's invoices)."""
        ...

    def test(self, school: str, operator: str) -> ConnectionCheck:
        """A live check against QuickBooks."""
        ...

    def status(self, school: str, now: datetime) -> dict[str, Any]:
        """Pill, tone, badge, company, country, realm, days_left, expires_at, last_error."""
        ...

    def disconnect(self, school: str, operator: str) -> Any:
        """Revoke and forget the tokens."""
        ...


def new_state() -> str:
    """A fresh OAuth state (CSRF token) from ``secrets``."""
    return secrets.token_urlsafe(32)


def connection_status(ledger: FlightLedger, school: str, now: datetime) -> dict[str, Any]:
    """CLI.md's connection status document (needs no QuickBooks settings)."""
    return status_document(ledger.connection(school), now)


def check_document(check: ConnectionCheck) -> dict[str, Any]:
    """CLI.md's / API.md's answer to a connection test or callback: ok, company, country,
    message."""
    return {
        "ok": check.ok,
        "company": check.company.company_name if check.company else None,
        "country": check.company.country if check.company else None,
        "message": check.message,
    }


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


# --- what a gateway's token refresh records (wired into its hooks by workers/qbo.py) ----------


def record_refresh(ledger: FlightLedger, school: str, expiries: TokenExpiries) -> None:
    """The tokens were refreshed: the Connection's expiries move on."""
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


def record_expired(ledger: FlightLedger, school: str, message: str) -> None:
    """The refresh token is dead (invalid_grant): the card says Reconnect."""
    update_connection(ledger, school, lambda c: c.expire(message=message, at=ledger.clock.now()))


def record_auth_failure(ledger: FlightLedger, school: str, message: str) -> None:
    """QuickBooks refused the tokens for another reason."""
    update_connection(
        ledger, school, lambda c: c.record_failure(message=message, at=ledger.clock.now())
    )


# --- records that may already be in the company a school leaves -------------------------------

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


@dataclass
class CallbackResult:
    """The connection check after a callback, with the lines shown along the way."""

    check: ConnectionCheck
    steps: list[str]


def _nothing() -> None:
    return None


class ConnectionUseCases:
    """Connect, complete the callback, test, disconnect and report a school's QBO connection.

    `oauth` is called when the OAuth client is first needed (building it checks the app's
    credentials); `read_callback` reads the provider's redirect URL; `open_view` opens the
    financial-event view caught up with the log (closed after each use); `on_connect_started`
    runs after a connect was started (the composition root keeps the app's client secret).
    """

    def __init__(
        self,
        ledger: FlightLedger,
        *,
        vault: ConnectionVault,
        oauth: Callable[[], OAuthPort],
        read_callback: Callable[[str], OAuthCallback],
        companies: CompanyDirectory,
        open_view: Callable[[], ProjectedView],
        on_connect_started: Callable[[], None] = _nothing,
    ) -> None:
        self.ledger = ledger
        self.vault = vault
        self._oauth = oauth
        self._read_callback = read_callback
        self.companies = companies
        self._open_view = open_view
        self._on_connect_started = on_connect_started

    def connect(self, school: str) -> tuple[str, str]:
        """Start the OAuth flow: (validated authorization URL, state)."""
        state = new_state()
        url = self._oauth().authorization_url(state)  # the adapter refuses an untrusted URL
        self.vault.put_state(school, state, ttl=STATE_TTL, now=self.ledger.clock.now())
        self._on_connect_started()
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
        answer = self._read_callback(redirect_url)
        if answer.error:
            raise ConnectionStepRefused(
                f"QuickBooks did not authorize the connection: {answer.error}"
                + (f" — {answer.error_description}" if answer.error_description else "")
            )
        if not answer.state or not self.vault.consume_state(
            school, answer.state, now=self.ledger.clock.now()
        ):
            log.warning("qbo_callback_refused", school=school, reason="state")
            raise ConnectionStepRefused(STATE_MISMATCH)
        if not answer.code or not answer.realm:
            raise ConnectionStepRefused("The QuickBooks callback URL carries no code or realmId")
        now = self.ledger.clock.now()
        try:
            tokens = self._oauth().exchange(answer.code, answer.realm, now)
        except AuthorizationFailed as exc:
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
        info = self.companies.company_with(school, tokens)
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

    def _has_invoices(self, school: str) -> bool:
        view = self._open_view()
        try:
            return bool(view.list(school, statuses=[Status.SYNCED.value], limit=1))
        finally:
            view.close()

    def _maybe_in_old_company(self, school: str) -> list[FinancialEvent]:
        """The school's records that may already exist in the company it is leaving."""
        view = self._open_view()
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
        probe = self.companies.probe(school)
        check = probe.test_connection()
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
            self._read_preferences(school, probe)
        return check

    def _read_preferences(self, school: str, probe: CompanyProbe) -> None:
        """Record SalesFormsPrefs.CustomTxnNumbers (off: QBO will not keep our DocNumbers)."""
        custom = probe.custom_txn_numbers()
        if custom is None:
            return
        update_connection(
            self.ledger,
            school,
            lambda c: c.record_preferences(custom_txn_numbers=custom, at=self.ledger.clock.now()),
        )
        if not custom:
            log.warning("qbo_custom_txn_numbers_disabled", school=school)

    def disconnect(self, school: str, operator: str = SYSTEM) -> bool:
        """Revoke at Intuit (best effort), forget the tokens, record Disconnected."""
        tokens = self.vault.get_tokens(school)
        if tokens is not None:
            try:
                self._oauth().revoke(tokens.refresh_token)
            except AuthorizationFailed as exc:
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
