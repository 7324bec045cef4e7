"""Pick financial events through the view (not by replaying the whole log), then load them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from adapters.heartbeat import open_heartbeat
from adapters.persistence import DatabaseUrl
from adapters.qbo_lists import QboListStore
from domain.application import FlightLedger
from domain.checklist import ChecklistItem, build_checklist
from domain.financial_event import FinancialEvent, Status
from domain.mapping_check import MappingProblem
from domain.qbo_lists import QboLists
from domain.retry import WAITING_FOR_OPERATOR, waiting_events
from projections.view import FinancialEventView
from services.mappings import mapping_problems as problems_in_use

UNSENT = (
    Status.PENDING,
    Status.SYNCING,
    Status.RETRYING,
    Status.FAILED,
    Status.UNCERTAIN,
    Status.ACTION_REQUIRED,
)
__all__ = ["UNSENT", "WAITING_FOR_OPERATOR", "checklist", "checklist_rows", "events_in"]


def events_in(
    ledger: FlightLedger, view: FinancialEventView, school: str, statuses: Sequence[str]
) -> list[FinancialEvent]:
    """domain.retry.waiting_events: the events whose view row has one of the statuses."""
    return waiting_events(ledger, view, school, statuses)


def cached_lists(ledger: FlightLedger, db: DatabaseUrl, school: str) -> QboLists | None:
    """The school's cached QuickBooks lists of its current realm (no QuickBooks call)."""
    realm = ledger.connection(school).realm
    return QboListStore(db).get(school, realm) if realm else None


def mapping_problems(
    ledger: FlightLedger,
    view: FinancialEventView,
    db: DatabaseUrl,
    school: str,
    lists: QboLists | None = None,
) -> list[MappingProblem]:
    """Keys used by unsent events that are unmapped or point at inactive/missing QuickBooks
    objects: from the view's usage counters (no scan of the log) and the cached lists."""
    found = lists if lists is not None else cached_lists(ledger, db, school)
    return problems_in_use(ledger, view, school, found)


def checklist(
    ledger: FlightLedger, view: FinancialEventView, db: DatabaseUrl, school: str
) -> list[ChecklistItem]:
    """Every setup checklist line of one school (DESIGN.md "Setup checklist")."""
    beats = _heartbeats(db)
    last_seen = max((at for at, _ in beats.values()), default=None)
    return build_checklist(
        connection=ledger.connection(school),
        mappings=ledger.mappings(school),
        problems=mapping_problems(ledger, view, db, school),
        auto_invoice=ledger.settings(school).auto_invoice,
        worker_last_seen=last_seen,
        now=ledger.clock.now(),
        worker_unhealthy=latest_unhealthy(beats),
    )


def _heartbeats(db: DatabaseUrl) -> dict[str, tuple[datetime, str]]:
    try:
        return open_heartbeat(db).details()
    except Exception:  # an unreadable heartbeat table reads as "no worker has run"
        return {}


def latest_unhealthy(beats: dict[str, tuple[datetime, str]]) -> str | None:
    """The error of the most recent heartbeat when it says 'unhealthy: <error>', else None."""
    if not beats:
        return None
    _, detail = max(beats.values(), key=lambda beat: beat[0])
    return detail.removeprefix("unhealthy:").strip() if detail.startswith("unhealthy:") else None


def worker_unhealthy(db: DatabaseUrl) -> str | None:
    """What the latest worker heartbeat reports as failing every pass (None: healthy / none)."""
    return latest_unhealthy(_heartbeats(db))


def checklist_rows(items: Sequence[ChecklistItem]) -> list[dict[str, Any]]:
    """Checklist items as JSON-ready dicts."""
    return [asdict(i) for i in items]
