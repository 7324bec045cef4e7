"""The Connection aggregate: one school's link to QuickBooks. Token values never enter it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate


@dataclass(frozen=True)
class HeldRecord:
    """A record that may already be in the old company (a push was sent, no definite answer)."""

    reference: str
    status: str


@dataclass(frozen=True)
class CompanySwitch:
    """A reconnect to another QuickBooks company than the one holding the school's invoices."""

    old_company: str
    old_realm: str
    new_company: str
    new_realm: str
    may_be_in_old: tuple[HeldRecord, ...]

    @property
    def refusal(self) -> str:
        """The sentence of issue 8: "This school's invoices are in <A>; you connected <B>"."""
        return f"This school's invoices are in {self.old_company}; you connected {self.new_company}"


class CompanySwitchRefused(RuntimeError):
    """Connecting another company was refused until an admin confirms the switch."""

    def __init__(self, message: str, switch: CompanySwitch) -> None:
        super().__init__(message)
        self.switch = switch


class ConnectionState:
    """Names of the connection's states."""

    NEVER = "never_connected"
    CONNECTED = "connected"
    EXPIRED = "expired"  # refresh token expired or revoked (invalid_grant)
    DISCONNECTED = "disconnected"


class Connection(Aggregate):
    """A school's QBO connection: realm, company, and the expiries of its tokens."""

    class Registered(Aggregate.Created):
        """The school's connection record exists (nothing connected yet)."""

        school: str

        def apply(self, aggregate: Any) -> None:
            """Initial state: never connected."""
            agg: Connection = aggregate
            agg.school = self.school
            agg.state = ConnectionState.NEVER
            agg.realm = None
            agg.company = None
            agg.country = None
            agg.access_expires_at = None
            agg.refresh_expires_at = None
            agg.hard_expires_at = None
            agg.last_error = None
            agg.last_error_at = None
            agg.last_tested_ok = None

    class Connected(Aggregate.Event):
        """The OAuth flow completed for a realm."""

        realm: str
        company: str
        country: str
        access_expires_at: datetime
        refresh_expires_at: datetime | None
        hard_expires_at: datetime | None
        actor: str

        def apply(self, aggregate: Any) -> None:
            """Now connected."""
            agg: Connection = aggregate
            agg.state = ConnectionState.CONNECTED
            agg.realm = self.realm
            agg.company = self.company or agg.company
            agg.country = self.country or agg.country
            agg.access_expires_at = self.access_expires_at
            agg.refresh_expires_at = self.refresh_expires_at
            agg.hard_expires_at = self.hard_expires_at
            agg.last_error = None
            agg.last_error_at = None

    class TokensRefreshed(Aggregate.Event):
        """Tokens were refreshed: new expiries only."""

        access_expires_at: datetime
        refresh_expires_at: datetime | None
        hard_expires_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            """New expiries."""
            agg: Connection = aggregate
            agg.access_expires_at = self.access_expires_at
            agg.refresh_expires_at = self.refresh_expires_at
            if self.hard_expires_at is not None:
                agg.hard_expires_at = self.hard_expires_at

    class ConnectionTested(Aggregate.Event):
        """A live test ran."""

        ok: bool
        company: str | None
        country: str | None
        message: str
        actor: str

        def apply(self, aggregate: Any) -> None:
            """Remember the outcome."""
            agg: Connection = aggregate
            agg.last_tested_ok = self.ok
            if self.ok:
                agg.company = self.company or agg.company
                agg.country = self.country or agg.country
                agg.last_error = None
                agg.last_error_at = None
            else:
                agg.last_error = self.message
                agg.last_error_at = self.timestamp

    class ConnectionFailed(Aggregate.Event):
        """An authentication failure not cured by a refresh (401/403)."""

        message: str

        def apply(self, aggregate: Any) -> None:
            """Remember the error."""
            agg: Connection = aggregate
            agg.last_error = self.message
            agg.last_error_at = self.timestamp

    class CallsSucceeded(Aggregate.Event):
        """The worker synced a record for the school in a pass begun at ``since``, after the
        error it remembered, and met no error on the way: that error is over (help article 000:
        the pill tells the token's state again, the stale error panel goes)."""

        since: datetime

        def apply(self, aggregate: Any) -> None:
            """Forget the error."""
            agg: Connection = aggregate
            agg.last_error = None
            agg.last_error_at = None

    class RefreshTokenExpired(Aggregate.Event):
        """The refresh token is expired or revoked (invalid_grant): reconnect needed."""

        message: str

        def apply(self, aggregate: Any) -> None:
            """Now expired."""
            agg: Connection = aggregate
            agg.state = ConnectionState.EXPIRED
            agg.last_error = self.message
            agg.last_error_at = self.timestamp

    class Disconnected(Aggregate.Event):
        """An operator disconnected; tokens were revoked and forgotten."""

        actor: str

        def apply(self, aggregate: Any) -> None:
            """Now disconnected."""
            agg: Connection = aggregate
            agg.state = ConnectionState.DISCONNECTED
            agg.access_expires_at = None
            agg.refresh_expires_at = None
            agg.hard_expires_at = None
            agg.last_error = None
            agg.last_error_at = None

    class PreferencesRead(Aggregate.Event):
        """The company's preferences flightledger depends on, as QuickBooks reported them."""

        custom_txn_numbers: bool

        def apply(self, aggregate: Any) -> None:
            """Remember them."""
            agg: Connection = aggregate
            agg.custom_txn_numbers = self.custom_txn_numbers

    school: str
    state: str
    realm: str | None
    company: str | None
    country: str | None
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    hard_expires_at: datetime | None
    last_error: str | None
    last_tested_ok: bool | None
    last_error_at: datetime | None = None  # when last_error was recorded
    # SalesFormsPrefs.CustomTxnNumbers: off, QBO ignores our DocNumbers (None: never read)
    custom_txn_numbers: bool | None = None

    def __init__(self) -> None:
        """State is set by the creation event's apply()."""

    @property
    def is_usable(self) -> bool:
        """Connected with a realm (expiry is judged by the caller's clock)."""
        return self.state == ConnectionState.CONNECTED and self.realm is not None

    def effective_refresh_expiry(self) -> datetime | None:
        """The nearer of the rolling and the hard refresh-token expiry."""
        candidates = [d for d in (self.refresh_expires_at, self.hard_expires_at) if d is not None]
        return min(candidates) if candidates else None

    def connect(
        self,
        *,
        realm: str,
        company: str,
        country: str,
        access_expires_at: datetime,
        refresh_expires_at: datetime | None,
        hard_expires_at: datetime | None,
        actor: str,
        at: datetime,
    ) -> None:
        """Record a completed OAuth flow."""
        self.trigger_event(
            self.Connected,
            realm=realm,
            company=company,
            country=country,
            access_expires_at=access_expires_at,
            refresh_expires_at=refresh_expires_at,
            hard_expires_at=hard_expires_at,
            actor=actor,
            timestamp=at,
        )

    def record_refresh(
        self,
        *,
        access_expires_at: datetime,
        refresh_expires_at: datetime | None,
        hard_expires_at: datetime | None,
        at: datetime,
    ) -> None:
        """Record new token expiries."""
        self.trigger_event(
            self.TokensRefreshed,
            access_expires_at=access_expires_at,
            refresh_expires_at=refresh_expires_at,
            hard_expires_at=hard_expires_at,
            timestamp=at,
        )

    def record_test(
        self,
        *,
        ok: bool,
        company: str | None,
        country: str | None,
        message: str,
        actor: str,
        at: datetime,
    ) -> None:
        """Record a live connection test."""
        self.trigger_event(
            self.ConnectionTested,
            ok=ok,
            company=company,
            country=country,
            message=message,
            actor=actor,
            timestamp=at,
        )

    def record_preferences(self, *, custom_txn_numbers: bool, at: datetime) -> None:
        """Record the company's preferences (only when they changed)."""
        if self.custom_txn_numbers == custom_txn_numbers:
            return
        self.trigger_event(
            self.PreferencesRead, custom_txn_numbers=custom_txn_numbers, timestamp=at
        )

    @property
    def keeps_doc_numbers(self) -> bool:
        """QuickBooks keeps the DocNumbers we send (custom transaction numbers on or unknown)."""
        return self.custom_txn_numbers is not False

    def record_failure(self, *, message: str, at: datetime) -> None:
        """Record an authentication failure (once per distinct message)."""
        if self.last_error == message:
            return
        self.trigger_event(self.ConnectionFailed, message=message, timestamp=at)

    def error_over(self, since: datetime) -> bool:
        """A usable connection whose remembered error was recorded before ``since``."""
        return (
            self.is_usable
            and self.last_error is not None
            and self.last_error_at is not None
            and self.last_error_at < since
        )

    def record_calls_succeeded(self, *, since: datetime, at: datetime) -> None:
        """The worker synced a record in a pass begun at ``since`` and met no error: an error
        recorded before then is over. One recorded before a later error (a failed test while the
        pass ran) stays; an expired token stays expired."""
        if self.error_over(since):
            self.trigger_event(self.CallsSucceeded, since=since, timestamp=at)

    def expire(self, *, message: str, at: datetime) -> None:
        """Record that the refresh token no longer works (only a connected school expires)."""
        if self.state != ConnectionState.CONNECTED:
            return
        self.trigger_event(self.RefreshTokenExpired, message=message, timestamp=at)

    def disconnect(self, *, actor: str, at: datetime) -> None:
        """Record a disconnect."""
        self.trigger_event(self.Disconnected, actor=actor, timestamp=at)
