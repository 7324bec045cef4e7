"""The dashboard in a real browser (Debian's chromium via Playwright) against a live server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.authorization_url import UNTRUSTED_URL_MESSAGE
from adapters.views import open_view
from adapters.web.app import create_app
from adapters.web.auth import local_operator
from domain.application import FlightLedger
from domain.financial_event import Status
from domain.pill import status_document as status_from_connection
from domain.ports import ConnectionCheck, FixedClock, ReasonCode
from domain.records import parse_flight_ended
from tests.e2e.serve_stack import dashboard_in_thread, free_port, serving
from tests.factories import flight
from workers.bootstrap import open_ledger
from workers.projector import Projector

SCREENSHOT = os.environ.get("FLIGHTLEDGER_SCREENSHOT")  # e.g. /tmp/dashboard.png, never committed


@dataclass
class FakeConnectionService:
    """Test-only stand-in for workers/qbo.py ConnectionService: hands out a hostile URL."""

    ledger: FlightLedger
    authorization_url: str = "https://evil.example/connect/oauth2?state=s"

    def connect(self, school: str) -> tuple[str, str]:
        """The configured (untrusted) authorization URL."""
        return self.authorization_url, "s"

    def callback(
        self, school: str, redirect_url: str, operator: str, *, switch_company: bool = False
    ) -> ConnectionCheck:
        """Never reached in these tests."""
        return ConnectionCheck(ok=False, message="not used")

    def test(self, school: str, operator: str) -> ConnectionCheck:
        """Never reached in these tests."""
        return ConnectionCheck(ok=False, message="not used")

    def status(self, school: str, now: datetime) -> dict[str, Any]:
        """Read from the aggregate."""
        return status_from_connection(self.ledger.connection(school), now)

    def disconnect(self, school: str, operator: str) -> None:
        """Never reached in these tests."""


@dataclass
class LiveServer:
    """A dashboard served by uvicorn on a free loopback port."""

    url: str
    ledger: FlightLedger


@pytest.fixture
def live_server(sqlite_url: str, clock: FixedClock) -> Iterator[LiveServer]:
    """uvicorn in a thread serving the local-operator dashboard of school alpha."""
    ledger = open_ledger(sqlite_url, clock=clock)
    view = open_view(sqlite_url)
    app = create_app(
        ledger=ledger,
        view=view,
        refresh_view=Projector(ledger, view).catch_up,
        session_key=os.urandom(32),
        connections=FakeConnectionService(ledger),
        local_user=local_operator("alpha"),
    )
    try:
        with serving(app, free_port()) as url:
            yield LiveServer(url=url, ledger=ledger)
    finally:
        ledger.close()


def _blocked_flight(ledger: FlightLedger, school: str, flight_id: str) -> None:
    """A flight in action_required for the unmapped aircraft_rental charge code only."""
    ledger.record(school, parse_flight_ended(flight(flight_id)))
    ledger.map_charge(school, "instructor_dual", "2", operator="setup")
    ledger.map_student(school, "S-7", "1", operator="setup")
    ledger.set_defaults(
        school, operator="setup", term_id="3", memo="Thanks", income_account_id="79"
    )
    event = ledger.find(school, flight_id)
    event.require_action(
        reason_code=ReasonCode.MISSING_MAPPING,
        message="Charge code aircraft_rental is not mapped to a QuickBooks item",
        missing=["charge:aircraft_rental"],
        actor="worker",
        at=ledger.clock.now(),
    )
    ledger.save(event)


def test_fix_mapping_then_retry_failed_in_the_page(live_server: LiveServer, page: Any) -> None:
    """The missing-mapping group shows its fix; after mapping, Retry Failed empties it."""
    from playwright.sync_api import expect

    _blocked_flight(live_server.ledger, "alpha", "F-1001")
    page.goto(live_server.url + "/")
    group = page.locator('article.group[data-reason="missing_mapping"]')
    expect(group).to_be_visible()
    expect(group).to_contain_text("1 event")
    expect(group).to_contain_text(
        "Map charge code aircraft_rental to a QuickBooks item, then press Retry Failed"
    )
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)

    live_server.ledger.map_charge("alpha", "aircraft_rental", "1", operator="ann")
    group.get_by_role("button", name="Retry Failed").click()

    expect(page.locator("#flash")).to_contain_text("1 requeued")
    expect(page.locator('article.group[data-reason="missing_mapping"]')).to_have_count(0)
    expect(page.locator("#nothing-to-do")).to_be_visible()
    row = page.locator('#events-table tr[data-ref="F-1001"]')
    expect(row.locator(".status")).to_have_text("Waiting to send")
    expect(row.locator(".status")).to_have_attribute("title", "pending")
    assert live_server.ledger.find("alpha", "F-1001").status == Status.PENDING


def test_untrusted_authorization_url_is_refused(live_server: LiveServer, page: Any) -> None:
    """Connect to QuickBooks with a non-Intuit URL shows the refusal and does not navigate."""
    from playwright.sync_api import expect

    page.goto(live_server.url + "/")
    page.get_by_role("button", name="Connect to QuickBooks").click()
    expect(page.locator("#message")).to_have_text(UNTRUSTED_URL_MESSAGE)
    assert page.url.startswith(live_server.url)


def test_connect_flow_against_the_simulator(sqlite_url: str, page: Any) -> None:
    """Connect goes through the simulator's consent to the callback, which verifies the company."""
    from playwright.sync_api import expect

    with dashboard_in_thread(sqlite_url, {}) as url:
        page.goto(url + "/")
        expect(page.locator("#pill")).to_have_text("Not connected")
        page.get_by_role("button", name="Connect to QuickBooks").click()
        # back on Invoicing Settings' card: verifying, then the test result and reminder
        assert page.url == url + "/settings"
        expect(page.locator("#verifying-title")).to_have_text("QuickBooks connected! Verifying...")
        expect(page.locator("#test-result")).to_have_text("Connected to Sunrise Flight School (US)")
        expect(page.locator("#pill")).to_have_text("Connected")
        expect(page.locator("#verify-mappings")).to_be_visible()
        expect(page.locator("#verify-mappings")).to_contain_text(
            "verify your account mappings are still set"
        )
        expect(page.locator("#company")).to_contain_text("Sunrise Flight School")
        page.goto(url + "/")
        expect(page.locator("#verifying")).to_have_count(0)
        expect(page.locator("#pill")).to_have_text("Connected")
        expect(page.locator("#badge")).to_have_text("100d")


def _cli(args: list[str], env: dict[str, str]) -> Any:
    from typer.testing import CliRunner

    from workers import cli

    cli._register_commands()
    return CliRunner().invoke(cli.app, args, env=env)


def test_serve_refuses_public_host_without_users_file(sqlite_url: str) -> None:
    """`serve --host 0.0.0.0` without FLIGHTLEDGER_USERS_FILE exits 1 with a stated reason."""
    result = _cli(
        ["--db", sqlite_url, "serve", "--host", "0.0.0.0"], {"FLIGHTLEDGER_USERS_FILE": ""}
    )
    assert result.exit_code == 1
    assert "refusing to serve on 0.0.0.0 without a users file" in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_a_broken_users_file(sqlite_url: str, tmp_path: Path) -> None:
    """A users file with an unknown permission is a usage error naming the entry."""
    users = tmp_path / "users.json"
    users.write_text(
        '[{"name": "ann", "token_sha256": "' + "a" * 64 + '", "school": "alpha",'
        ' "permissions": ["billing:everything"]}]'
    )
    result = _cli(["--db", sqlite_url, "serve"], {"FLIGHTLEDGER_USERS_FILE": str(users)})
    assert result.exit_code == 2
    assert "unknown permission(s) billing:everything" in result.output


def _connect(ledger: FlightLedger, school: str, refresh_in: timedelta | None) -> None:
    """Record a completed OAuth flow whose refresh token lives `refresh_in` (None: unknown)."""
    connection = ledger.connection(school)
    now = ledger.clock.now()
    connection.connect(
        realm="9130350000000001",
        company="Sunrise Flight School",
        country="US",
        access_expires_at=now + timedelta(hours=1),
        refresh_expires_at=None if refresh_in is None else now + refresh_in,
        hard_expires_at=None,
        actor="ann",
        at=now,
    )
    ledger.save(connection)


def _change(ledger: FlightLedger, school: str, change: Any) -> None:
    connection = ledger.connection(school)
    change(connection)
    ledger.save(connection)


def test_card_states_in_the_words_of_the_help_article(
    live_server: LiveServer, page: Any, clock: FixedClock
) -> None:
    """Each pill, badge, panel and button state of article 000, with its exact words."""
    from playwright.sync_api import expect

    ledger, url = live_server.ledger, live_server.url

    def card(pill: str, tone: str, badge: str | None, button: str, primary: bool = True) -> Any:
        page.goto(url + "/")
        expect(page.locator("#pill")).to_have_text(pill)
        expect(page.locator("#pill")).to_have_class(f"pill tone-{tone}")
        if badge is None:
            expect(page.locator("#badge")).to_have_count(0)
        else:
            expect(page.locator("#badge")).to_have_text(badge)
        shown = page.locator("#connection-panel form[action='/connect'] button")
        expect(shown).to_have_text(button)
        expect(shown).to_have_class("" if primary else "secondary")
        return page.locator("#connection-panel")

    panel = card("Not connected", "grey", None, "Connect to QuickBooks")
    expect(panel).not_to_contain_text("Connected Account")

    _connect(ledger, "alpha", timedelta(days=100))
    card("Connected", "green", "100d", "Connect to QuickBooks", primary=False)
    expect(page.locator("#expires")).to_contain_text("expires 2027-02-28 08:00 UTC")
    expect(page.locator("#connection-error")).to_have_count(0)

    clock.advance(70 * 86400)  # 30 days left: amber
    card("30d left", "amber", "30d left", "Reconnect QuickBooks")
    clock.advance(16 * 86400)  # 14 days left: red
    card("14d left", "red", "14d • reconnect", "Reconnect QuickBooks")
    clock.advance(13 * 86400 + 3600)  # under a day
    card("0d left", "red", "Reconnect soon", "Reconnect QuickBooks")
    clock.advance(86400)  # expired
    panel = card("Reconnect", "red", "Reconnect", "Reconnect QuickBooks")
    expect(page.locator("#reconnect-alert strong")).to_have_text(
        "QuickBooks needs to be reconnected"
    )
    expect(page.locator("#reconnect-alert p")).to_have_text(
        "Your refresh token has expired. Reconnect to keep invoicing through QuickBooks."
    )

    # a fresh connection, then QuickBooks answers 403: the red panel with its own message
    _connect(ledger, "alpha", timedelta(days=100))
    qbo_403 = "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403"
    _change(ledger, "alpha", lambda c: c.record_failure(message=qbo_403, at=clock.now()))
    panel = card("Connection error", "red", "100d", "Reconnect QuickBooks")
    expect(page.locator("#badge")).to_have_class("badge tone-green")  # the token is still good
    expect(page.locator("#connection-error strong")).to_have_text("QuickBooks connection error")
    expect(page.locator("#connection-error-message")).to_have_text(qbo_403)
    expect(panel).not_to_contain_text("QuickBooks said")

    # revoked (invalid_grant with time left): Reconnect, QuickBooks' message, no expiry date
    revoked = "invalid_grant: Incorrect or invalid refresh token"
    _change(ledger, "alpha", lambda c: c.expire(message=revoked, at=clock.now()))
    panel = card("Reconnect", "red", "Reconnect", "Reconnect QuickBooks")
    expect(page.locator("#expires")).to_have_count(0)
    expect(page.locator("#connection-error-message")).to_have_text(revoked)
    expect(panel).not_to_contain_text("QuickBooks said")

    # no expiry known at all
    _connect(ledger, "alpha", None)
    card("Connected", "green", "Token unknown", "Connect to QuickBooks", primary=False)

    # after Disconnect: no Connected Account company or badge
    _change(ledger, "alpha", lambda c: c.disconnect(actor="ann", at=clock.now()))
    panel = card("Not connected", "grey", None, "Connect to QuickBooks")
    expect(panel).not_to_contain_text("Connected Account")
    expect(panel).not_to_contain_text("Sunrise Flight School")


def test_events_tab_in_plain_words_with_retry_and_banner(
    live_server: LiveServer, page: Any
) -> None:
    """Staff words (codes in the tooltip), the banner, names, Retry per event and per selection."""
    from playwright.sync_api import expect

    ledger, url = live_server.ledger, live_server.url
    for ref in ("F-1", "F-2", "F-3"):
        _blocked_flight(ledger, "alpha", ref)
    page.goto(url + "/")
    expect(page.locator("#attention")).to_have_text("QuickBooks sync needs attention: 3 flights")
    row = page.locator('#events-table tr[data-ref="F-1"]')
    expect(row.locator(".status")).to_have_text("Needs action")
    expect(row.locator(".status")).to_have_attribute("title", "action_required")
    expect(row.locator(".reason")).to_have_text("Something is not mapped")
    expect(row.locator(".reason")).to_have_attribute("title", "missing_mapping")
    expect(row).to_contain_text("Student S-7")
    page.goto(url + "/events/F-1")  # the banner is on every page
    expect(page.locator("#attention")).to_have_text("QuickBooks sync needs attention: 3 flights")

    ledger.map_charge("alpha", "aircraft_rental", "1", operator="ann")
    page.goto(url + "/?q=F-2")
    expect(page.locator("#events-table tbody tr")).to_have_count(1)
    page.get_by_role("button", name="Retry F-2").click()
    expect(page.locator("#flash")).to_contain_text("1 requeued")
    page.goto(url + "/?status=action_required")
    page.get_by_label("Select F-1").check()
    page.get_by_label("Select F-3").check()
    page.get_by_role("button", name="Retry Failed for the selected").click()
    expect(page.locator("#flash")).to_contain_text("2 requeued")
    expect(page.locator("#attention")).to_have_count(0)

    ledger.set_auto_invoice("alpha", False, operator="ann")
    page.goto(url + "/")
    expect(page.locator('#events-table tr[data-ref="F-1"]')).to_contain_text(
        "Waiting: auto-invoice is off"
    )
    expect(
        page.locator('#events-table tr[data-ref="F-1"] td[data-label="QuickBooks"]')
    ).to_have_text("")


def test_phone_layout_shows_status_and_reason(live_server: LiveServer, browser: Any) -> None:
    """At 390 px the events and history tables fit the screen and show Status and Reason."""
    from playwright.sync_api import expect

    _blocked_flight(live_server.ledger, "alpha", "F-1")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone = context.new_page()
        for path, table in (("/", "#events-table"), ("/events/F-1", "#history")):
            phone.goto(live_server.url + path)
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} overflows sideways: {width}px"
            if table == "#events-table":
                cell = phone.locator(f'{table} tr[data-ref="F-1"] td[data-label="Status"]')
                cell.scroll_into_view_if_needed()
                expect(cell).to_be_in_viewport()  # nothing hides it off to the side
                expect(cell).to_contain_text("Needs action")
                reason = phone.locator(f'{table} tr[data-ref="F-1"] td[data-label="Reason"]')
                expect(reason).to_contain_text("Something is not mapped")
                box = reason.bounding_box()
                assert box is not None and box["x"] + box["width"] <= 390
            else:
                expect(phone.locator(f"{table} td[data-label='Event']").first).to_be_visible()
    finally:
        context.close()
