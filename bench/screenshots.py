"""`make screenshots`: the dashboard's main states rendered by Playwright (Debian's chromium)
into docs/screens/ — healthy, 30d amber, 14d red, Reconnect, connection error, Action Required
groups, settings, one invoice's history, and the phone layout.

Everything runs here: the QBO simulator, the real connection and list services, the dashboard
served by uvicorn on a loopback port. The clock is fixed so the pictures do not drift.
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import ROOT

OUT = ROOT / "docs" / "screens"
CHROMIUM = os.environ.get("FLIGHTLEDGER_TEST_CHROMIUM", "/usr/bin/chromium")
SCHOOL = "sunrise"
AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def main() -> int:
    """Render every state; print the files written."""
    from playwright.sync_api import sync_playwright

    from adapters.persistence import parse_database_url
    from adapters.qbo_lists import QboListStore
    from adapters.views import open_view
    from adapters.web.app import create_app
    from adapters.web.auth import local_operator
    from domain.ports import FixedClock, ReasonCode
    from domain.records import parse_flight_ended
    from qbo_simulator import QboSimulator, SimulatorConfig
    from tests.e2e.serve_stack import free_port, serving
    from tests.factories import flight
    from workers.bootstrap import open_ledger
    from workers.projector import Projector
    from workers.qbo import ConnectionService, open_vault, qbo_settings_from_env
    from workers.qbo_lists import QboListService

    OUT.mkdir(parents=True, exist_ok=True)
    clock = FixedClock(AT)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp, QboSimulator(SimulatorConfig()) as sim:
        url = f"sqlite:///{Path(tmp) / 'screens.db'}"
        env = {
            "FLIGHTLEDGER_QBO_ENVIRONMENT": "simulator",
            "FLIGHTLEDGER_QBO_SIMULATOR_URL": sim.url,
            "FLIGHTLEDGER_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        ledger = open_ledger(url, clock=clock)
        view = open_view(url)
        service = ConnectionService(ledger, open_vault(url, env, False), qbo_settings_from_env(env))
        lists = QboListService(ledger, service, QboListStore(parse_database_url(url)))
        service.connect_simulator(SCHOOL, "ann")
        lists.refresh(SCHOOL)
        ledger.map_charge(SCHOOL, "aircraft_rental", "1", operator="ann")
        ledger.map_student(SCHOOL, "S-1", "1", operator="ann")
        ledger.set_defaults(
            SCHOOL, operator="ann", term_id="3", memo="Thank you", income_account_id="79"
        )
        for n, student in enumerate(("S-1", "S-2", "S-1", "S-3"), start=1):
            ledger.record(SCHOOL, parse_flight_ended(flight(f"F-{n}", student)))
        for ref in ("F-2", "F-4"):
            event = ledger.find(SCHOOL, ref)
            event.require_action(
                reason_code=ReasonCode.MISSING_MAPPING,
                message="Charge code instructor_dual is not mapped to a QuickBooks item",
                missing=["charge:instructor_dual", f"student:{event.student_id}"],
                actor="worker",
                at=clock.now(),
            )
            ledger.save(event)
        app = create_app(
            ledger=ledger,
            view=view,
            refresh_view=Projector(ledger, view).catch_up,
            session_key=os.urandom(32),
            connections=service,
            local_user=local_operator(SCHOOL),
            qbo_lists=lists,
        )

        def connection(change: Callable[[Any], None]) -> None:
            found = ledger.connection(SCHOOL)
            change(found)
            ledger.save(found)

        def refresh_expiry(days: float) -> Callable[[Any], None]:
            return lambda c: c.record_refresh(
                access_expires_at=clock.now() + timedelta(hours=1),
                refresh_expires_at=clock.now() + timedelta(days=days),
                hard_expires_at=None,
                at=clock.now(),
            )

        with serving(app, free_port()) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def shot(name: str, path: str = "/", full: bool = False) -> None:
                page.goto(base + path)
                target = OUT / f"{name}.png"
                if full:
                    page.screenshot(path=str(target), full_page=True)
                else:
                    page.locator("#connection-panel").screenshot(path=str(target))
                written.append(target)

            connection(refresh_expiry(100))
            shot("healthy")
            shot("action-required", full=True)
            connection(refresh_expiry(30.5))
            shot("amber-30d")
            connection(refresh_expiry(14.5))
            shot("red-14d")
            message = "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403"
            connection(refresh_expiry(100))
            connection(lambda c: c.record_failure(message=message, at=clock.now()))
            shot("connection-error")
            connection(lambda c: c.expire(message="invalid_grant", at=clock.now()))
            shot("reconnect")
            service.connect_simulator(SCHOOL, "ann")
            shot("settings", "/settings", full=True)
            shot("invoice-history", "/events/F-1", full=True)
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.goto(base + "/?status=action_required")
            phone.screenshot(path=str(OUT / "phone.png"), full_page=True)
            written.append(OUT / "phone.png")
            browser.close()
        view.close()
        ledger.close()
    for path in written:
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
