"""The events tab's page query (keyset, filters, search) on the stored views, both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.views import open_view
from domain.financial_event import Status
from domain.ports import FixedClock, ReasonCode
from domain.records import parse_flight_ended
from projections.view import EventQuery
from tests.factories import flight
from workers.bootstrap import open_ledger
from workers.projector import Projector


def test_page_walks_newest_first_with_filters(db_url: str, clock: FixedClock) -> None:
    """Keyset pages cover every row once, newest first; each filter narrows as staff expect."""
    ledger = open_ledger(db_url, clock=clock)
    view = open_view(db_url)
    try:
        for n in range(1, 8):
            ledger.record("alpha", parse_flight_ended(flight(f"F-{n}", f"S-{n % 2}")))
            clock.advance(86400)
        ledger.record("beta", parse_flight_ended(flight("F-99", "S-1")))
        blocked = ledger.find("alpha", "F-3")
        blocked.require_action(
            reason_code=ReasonCode.MISSING_MAPPING,
            message="Charge code aircraft_rental is not mapped",
            missing=["charge:aircraft_rental"],
            actor="worker",
            at=clock.now(),
        )
        ledger.save(blocked)
        Projector(ledger, view).catch_up()

        seen: list[str] = []
        before = None
        while True:
            rows = view.page("alpha", EventQuery(before=before, limit=3))
            seen += [r.reference for r in rows]
            if len(rows) < 3:
                break
            before = rows[-1].position
        assert seen == [f"F-{n}" for n in range(7, 0, -1)], "each row once, newest first"

        def refs(**filters: object) -> list[str]:
            return [r.reference for r in view.page("alpha", EventQuery(**filters))]  # type: ignore[arg-type]

        assert refs(student_id="S-0") == ["F-6", "F-4", "F-2"]
        assert refs(search="F-5") == ["F-5"]
        assert refs(search="F-99") == [], "another school's events never show"
        assert refs(statuses=(Status.ACTION_REQUIRED,)) == ["F-3"]
        assert refs(reason_code="missing_mapping", student_id="S-1") == ["F-3"]
        start = datetime(2026, 11, 22, tzinfo=UTC)  # F-3 was recorded on the 22nd
        assert refs(since=start, until=start + timedelta(days=2)) == ["F-4", "F-3"]
    finally:
        view.close()
        ledger.close()
