"""The dashboard's configuration: everything it needs, passed in by the composition root."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.authorization_url import INTUIT_AUTHORIZATION_ORIGIN
from adapters.web.auth import SessionRegistry, SignInThrottle, User, UserDirectory
from adapters.web.connection import ConnectionServicePort
from domain.application import FlightLedger
from domain.ports import Clock
from domain.qbo_lists import QboListsPort
from projections.view import FinancialEventView

ChecklistProvider = Callable[[str], Sequence[dict[str, Any]]]


@dataclass
class WebConfig:
    """Everything the dashboard needs, passed in by the composition root."""

    ledger: FlightLedger
    view: FinancialEventView
    session_key: bytes
    connections: ConnectionServicePort | None = None
    users: UserDirectory | None = None
    local_user: User | None = None
    clock: Clock | None = None
    authorization_origins: Sequence[str] = (INTUIT_AUTHORIZATION_ORIGIN,)
    checklist: ChecklistProvider | None = None
    refresh_view: Callable[[], Any] | None = None  # bring the view up to date before reads
    secure_cookies: bool = False
    # why there is no connection service (what to set), shown on the card instead of Connect
    connections_unavailable: str = ""
    qbo_lists: QboListsPort | None = None  # QuickBooks' lists per realm (pick-lists, checks)
    sessions: SessionRegistry = field(default_factory=SessionRegistry)  # signed-in sessions
    throttle: SignInThrottle = field(default_factory=SignInThrottle)  # wrong sign-in tokens
    # auditors: one school's `audit export` lines (school, since, until, "jsonl"|"csv") and the
    # tamper check's verdict ({"ok", "events", "head", "message"?}); wired by `serve`
    audit_export: Callable[[str, datetime | None, datetime | None, str], Iterable[str]] | None = (
        None
    )
    audit_verify: Callable[[], dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def now(self) -> datetime:
        """The current time from the configured clock."""
        assert self.clock is not None
        return self.clock.now()

    def counts(self, school: str) -> dict[str, int]:
        """Rows per status: the view's counters (kept by the projector with the rows)."""
        return self.view.counts(school)

    def refresh(self) -> None:
        """Bring the view up to date before a read, when a refresher was given."""
        if self.refresh_view is not None:
            self.refresh_view()
