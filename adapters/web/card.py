"""The QuickBooks card's content (help article 000): pill, panels, badge and buttons.

The card shows QuickBooks' own message in the red "QuickBooks connection error" panel, never
one of our own sentences labelled as if QuickBooks had said it; the "Connected Account" panel
only while a realm is connected (not after Disconnect); the expiry date only while it means
something (not for a revoked token); a primary "Reconnect QuickBooks" in the amber, red and
expired states; and "QuickBooks connected! Verifying..." right after the OAuth callback, which
returns to Invoicing Settings (the card is there too, above the QuickBooks Defaults and the
mappings the reminder asks to verify), as help article 000 says.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import Request

from adapters.redaction import redact_text
from adapters.web.config import WebConfig
from adapters.web.connection import needs_reconnect
from domain.pill import (
    AMBER,
    EXPIRED_TITLE,
    NOT_CONNECTED,
    RED,
    badge_tone,
    status_document,
)
from domain.preflight import NOT_CONNECTED_MESSAGE, RECONNECT_MESSAGE
from services.connection import CONNECTED_VERIFYING

log = structlog.get_logger(__name__)

CONNECTION_ERROR_TITLE = "QuickBooks connection error"
VERIFYING_KEY = "verifying"  # session key set by the callback, taken by the next card
OWN_SENTENCES = frozenset({NOT_CONNECTED_MESSAGE, RECONNECT_MESSAGE})


def connection_status(cfg: WebConfig, school: str) -> dict[str, Any]:
    """The connection status document; a failing service still yields one (and says why)."""
    if cfg.connections is not None:
        try:
            return dict(cfg.connections.status(school, cfg.now()))
        except Exception as exc:  # the page still renders; the reason is shown as ours
            log.warning("web_connection_status_failed", school=school, error=type(exc).__name__)
            status = status_document(cfg.ledger.connection(school), cfg.now())
            status["service_error"] = redact_text(str(exc))
            return status
    return status_document(cfg.ledger.connection(school), cfg.now())


def card_status(cfg: WebConfig, school: str) -> dict[str, Any]:
    """What card.js updates after the automatic test, as a reload would render it: pill, tones,
    badge, company, the red panels (QuickBooks' message, the expired one) and which Connect
    button is primary."""
    status = connection_status(cfg, school)
    shown = {k: status.get(k) for k in ("pill", "tone", "badge", "company", "country")}
    shown["badge_tone"] = badge_tone(str(status.get("badge") or ""), status.get("days_left"))
    reconnect = needs_reconnect(status)
    qbo_error = qbo_message(status)
    shown["qbo_error"] = qbo_error
    shown["reconnect"] = reconnect
    shown["reconnect_primary"] = reconnect or _warn(status, qbo_error)
    return shown


def _warn(conn: dict[str, Any], qbo_error: str | None) -> bool:
    """An amber/red pill or a surfaced QuickBooks error: Reconnect becomes the primary action."""
    return conn.get("tone") in (AMBER, RED) or qbo_error is not None


def qbo_message(status: dict[str, Any]) -> str | None:
    """QuickBooks' own last error message, or None (none, or only one of our own sentences)."""
    message = status.get("last_error")
    if not message or status.get("pill") == NOT_CONNECTED:
        return None
    text = str(message)
    if text in OWN_SENTENCES:
        return None
    return text


def mark_verifying(request: Request) -> None:
    """After a completed callback: the next card shows 'Verifying...' and runs the test."""
    request.state.session[VERIFYING_KEY] = True
    request.state.session_dirty = True


def card_context(cfg: WebConfig, request: Request, school: str) -> dict[str, Any]:
    """Everything _card.html needs."""
    conn = connection_status(cfg, school)
    verifying = bool(request.state.session.pop(VERIFYING_KEY, False))
    if verifying:
        request.state.session_dirty = True
    reconnect = needs_reconnect(conn)
    qbo_error = qbo_message(conn)
    return {
        "conn": conn,
        "reconnect": reconnect,
        "warn": not reconnect and _warn(conn, qbo_error),
        "qbo_error": qbo_error,
        "badge_tone": badge_tone(str(conn.get("badge") or ""), conn.get("days_left")),
        "service_error": conn.get("service_error"),
        "connected_account": conn.get("pill") != NOT_CONNECTED
        and bool(conn.get("company") or conn.get("realm")),
        "connection_error_title": CONNECTION_ERROR_TITLE,
        "expired_title": EXPIRED_TITLE,
        "expired_text": RECONNECT_MESSAGE,
        "verifying": verifying,
        "on_settings": request.url.path == "/settings",  # the reminder points below, not away
        "verifying_title": CONNECTED_VERIFYING,
        "unavailable": cfg.connections_unavailable if cfg.connections is None else "",
    }
