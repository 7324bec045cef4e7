"""What the dashboard needs from the QuickBooks connection: the Reconnect test, the sentences
and the company-switch confirmation (the port is services.connection's).

The trusted-URL check and its sentences are adapters.authorization_url's (one place).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from domain.connection import CompanySwitch
from domain.pill import RECONNECT
from domain.ports import ConnectionCheck
from services.connection import ConnectionServicePort

__all__ = [
    "ConnectionServicePort",
    "check_sentence",
    "confirm_switch",
    "needs_reconnect",
    "switch_page_context",
    "take_switch",
]

# the connection service's sentences name CLI steps; the browser names its own buttons
CLI_STEPS = {"run 'connection connect' again": "press Connect to QuickBooks again"}
SWITCH_KEY = "switch_company"  # session: the company an admin confirmed switching to
HELD_SHOWN = 50  # records listed on the confirm page (the count is always given)


def needs_reconnect(status: dict[str, Any]) -> bool:
    """Whether the panel shows the expired-token message and a Reconnect button."""
    return RECONNECT in (status.get("pill"), status.get("badge"))


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


def in_browser_words(message: str) -> str:
    """A refusal of the connection service with its CLI steps told as the dashboard's buttons
    (office staff do not use a terminal)."""
    for cli_step, button in CLI_STEPS.items():
        message = message.replace(cli_step, button)
    return message
