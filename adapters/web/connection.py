"""What the dashboard needs from the QuickBooks connection: a port, a trusted-URL check, a pill."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from domain.ports import ConnectionCheck

INTUIT_AUTHORIZATION_ORIGIN = "https://appcenter.intuit.com"
UNTRUSTED_REDIRECT = "Untrusted QuickBooks redirect URL — refusing to navigate"
NO_AUTHORIZATION_URL = "No authorization URL received from QuickBooks"


class ConnectionServicePort(Protocol):
    """The connection use cases the dashboard calls (workers/qbo.py ConnectionService)."""

    def connect(self, school: str) -> tuple[str, str]:
        """Start the OAuth flow: (authorization_url, state)."""
        ...

    def callback(self, school: str, redirect_url: str, operator: str) -> ConnectionCheck:
        """Complete the flow from the URL QuickBooks redirected to."""
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


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    default = 443 if scheme == "https" else 80
    return scheme, host.lower(), port or default


def is_trusted_authorization_url(url: str | None, trusted_origins: Sequence[str]) -> bool:
    """True only for a URL whose scheme, host and port equal one trusted origin, no userinfo."""
    if not url:
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.username is not None or parts.password is not None or not parts.hostname:
        return False
    if parts.scheme not in ("https", "http"):
        return False
    candidate = _origin(parts.scheme, parts.hostname, port)
    for origin in trusted_origins:
        trusted = urlsplit(origin)
        if not trusted.hostname:
            continue
        if trusted.scheme == "http" and trusted.hostname not in ("127.0.0.1", "localhost", "::1"):
            continue  # plain http is trusted only for a loopback simulator
        if candidate == _origin(trusted.scheme, trusted.hostname, trusted.port):
            return True
    return False


def refusal_for(url: str | None) -> str:
    """The sentence shown when the authorization URL cannot be followed."""
    return NO_AUTHORIZATION_URL if not url else UNTRUSTED_REDIRECT


def needs_reconnect(status: dict[str, Any]) -> bool:
    """Whether the panel shows the expired-token message and a Reconnect button."""
    return status.get("pill") == "Reconnect" or status.get("badge") == "Reconnect"


def check_sentence(check: ConnectionCheck) -> str:
    """'Connected to <company> (<country>)' or QuickBooks' own message."""
    if check.ok and check.company is not None:
        return f"Connected to {check.company.company_name} ({check.company.country})"
    if check.ok:
        return "Connected to QuickBooks"
    return check.message or "QuickBooks did not accept the connection test"
