"""The connection pill and the refresh-token badge (DESIGN.md 'Connection pill'), at read time.

Days are counted as the floor of the remaining time in whole days: 30 days and 23 hours left is
"30d"; under 24 hours left is 0 days ("Reconnect soon" on the badge, "0d left" red on the pill).
The expiry is the nearer of the rolling and the hard refresh-token expiry. At or past it, or
after invalid_grant (state expired), the pill says "Reconnect"; a revoked token (invalid_grant
before its expiry) shows no expiry date.

A connected school whose last call or test met an error QuickBooks returned (a 401 not cured by
a refresh, a 403 such as ApplicationAuthorizationFailed, invalid_client, a failed Test
Connection) is not healthy: the pill says "Connection error" in red until a connection test
succeeds, the school reconnects, or the worker syncs a record for it in a pass begun after the
error (help article 000, "A surfaced connection error"; the Connection forgets the error then:
``Connection.record_calls_succeeded``). The badge keeps telling the refresh token's own state,
in that state's tone (``badge_tone``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.connection import Connection, ConnectionState

GREEN = "green"
AMBER = "amber"
RED = "red"
GREY = "grey"
CONNECTED = "Connected"
CONNECTION_ERROR = "Connection error"
RECONNECT = "Reconnect"
NOT_CONNECTED = "Not connected"
TOKEN_UNKNOWN = "Token unknown"  # noqa: S105 - badge text, not a credential
RECONNECT_SOON = "Reconnect soon"
EXPIRED_TITLE = "QuickBooks needs to be reconnected"


@dataclass(frozen=True)
class Pill:
    """What the status pill and the badge show."""

    pill: str
    tone: str
    badge: str
    days_left: int | None
    expires_at: datetime | None

    @property
    def needs_reconnect(self) -> bool:
        """The refresh token is gone: show the expired panel."""
        return self.pill == RECONNECT


def days_left(expires_at: datetime, now: datetime) -> int:
    """Whole days remaining (floor); negative once expired."""
    return (expires_at - now) // timedelta(days=1)


def pill_for(
    expires_at: datetime | None, now: datetime, *, expired: bool = False, error: bool = False
) -> Pill:
    """Pill and badge for a connected school whose refresh token expires at ``expires_at``.

    ``error``: QuickBooks answered the last call or test with an error (the pill is red
    "Connection error", the badge still the token's); an expired token says Reconnect instead.
    """
    token = _token_pill(expires_at, now, expired=expired)
    if error and not token.needs_reconnect:
        return Pill(CONNECTION_ERROR, RED, token.badge, token.days_left, token.expires_at)
    return token


def _token_pill(expires_at: datetime | None, now: datetime, *, expired: bool) -> Pill:
    if expired and (expires_at is None or expires_at > now):
        # revoked / invalid_grant with time still on the clock: that date means nothing now
        return Pill(RECONNECT, RED, RECONNECT, None, None)
    if expires_at is not None and expires_at <= now:
        return Pill(RECONNECT, RED, RECONNECT, days_left(expires_at, now), expires_at)
    if expires_at is None:
        return Pill(CONNECTED, GREEN, TOKEN_UNKNOWN, None, None)
    days = days_left(expires_at, now)
    if days > 30:
        return Pill(CONNECTED, GREEN, f"{days}d", days, expires_at)
    if days >= 15:
        return Pill(f"{days}d left", AMBER, f"{days}d left", days, expires_at)
    if days >= 1:
        return Pill(f"{days}d left", RED, f"{days}d • reconnect", days, expires_at)
    return Pill(f"{days}d left", RED, RECONNECT_SOON, days, expires_at)


def connection_pill(connection: Connection | None, now: datetime) -> Pill:
    """The pill of a school's connection (None or never connected/disconnected: grey)."""
    if connection is None or connection.state in (
        ConnectionState.NEVER,
        ConnectionState.DISCONNECTED,
    ):
        return Pill(NOT_CONNECTED, GREY, TOKEN_UNKNOWN, None, None)
    return pill_for(
        connection.effective_refresh_expiry(),
        now,
        expired=connection.state == ConnectionState.EXPIRED,
        error=bool(connection.last_error),
    )


def badge_tone(badge: str, days_left: int | None) -> str:
    """The refresh-token badge's own tone (the pill's may be red for a connection error)."""
    if days_left is None:
        return RED if badge == RECONNECT else GREEN
    if days_left > 30:
        return GREEN
    if days_left >= 15:
        return AMBER
    return RED


def status_document(connection: Connection | None, now: datetime) -> dict[str, Any]:
    """The connection status as the CLI and the dashboard show it (CLI.md fields)."""
    pill = connection_pill(connection, now)
    return {
        "pill": pill.pill,
        "tone": pill.tone,
        "badge": pill.badge,
        "company": connection.company if connection else None,
        "country": connection.country if connection else None,
        "realm": connection.realm if connection else None,
        "days_left": pill.days_left,
        "expires_at": pill.expires_at.isoformat() if pill.expires_at else None,
        "last_error": connection.last_error if connection else None,
    }
