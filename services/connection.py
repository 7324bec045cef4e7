"""The QuickBooks connection use cases: connect, callback, test, disconnect, status.

`flightledger connection ...`, the dashboard's QuickBooks card and `GET /api/v1/connection`,
`POST /api/v1/connection/test` call them through this port. They are implemented by
workers.qbo.ConnectionService, which assembles what they need from adapters/ (intuitlib's OAuth
client, the token vault, the QuickBooks gateway) and records each step on the school's
Connection aggregate; the sentences they answer with live in domain.preflight (not connected,
Reconnect) and adapters.authorization_url (the one trusted-URL check).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from domain.ports import ConnectionCheck


class ConnectionServicePort(Protocol):
    """The connection use cases the dashboard and the API call (workers.qbo.ConnectionService)."""

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
