"""What the dashboard needs from the QuickBooks connection: a port and the Reconnect test.

The trusted-URL check and its sentences are adapters.authorization_url's (one place).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from fastapi import Request

from domain.connection import CompanySwitch
from domain.ports import ConnectionCheck

SWITCH_KEY = "switch_company"  # session: the company an admin confirmed switching to
HELD_SHOWN = 50  # records listed on the confirm page (the count is always given)


class ConnectionServicePort(Protocol):
    """The connection use cases the dashboard calls (workers/qbo.py ConnectionService)."""

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


def confirm_switch(request: Request, realm: str, company: str) -> None:
    """An admin confirmed the switch to ``realm``: the next callback for it may switch."""
    request.state.session[SWITCH_KEY] = {"realm": realm, "company": company}
    request.state.session_dirty = True


def take_switch(request: Request, realm: str) -> dict[str, Any] | None:
    """The confirmed switch, if the callback connects the realm that was confirmed (taken
    either way: a confirmation serves one callback)."""
    confirmed = request.state.session.pop(SWITCH_KEY, None)
    if confirmed is not None:
        request.state.session_dirty = True
    if isinstance(confirmed, dict) and realm and confirmed.get("realm") == realm:
        return confirmed
    return None


def switch_page_context(switch: CompanySwitch) -> dict[str, Any]:
    """What switch_company.html shows: the refusal, what may be in the old company, the button."""
    return {
        "title": "Switch QuickBooks company?",
        "refusal": switch.refusal + ".",
        "switch": switch,
        "held": switch.may_be_in_old[:HELD_SHOWN],
        "held_count": len(switch.may_be_in_old),
    }
