"""What the dashboard needs from the QuickBooks connection: a port and the Reconnect test.

The trusted-URL check and its sentences are adapters.authorization_url's (one place).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from domain.ports import ConnectionCheck


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
