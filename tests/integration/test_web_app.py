"""The web dashboard against a real SQLite ledger: routes, permissions, CSRF, school isolation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from adapters.authorization_url import NO_URL_MESSAGE, UNTRUSTED_URL_MESSAGE
from adapters.persistence import parse_database_url
from adapters.web.app import create_app
from adapters.web.auth import UserDirectory, hash_token, local_operator
from domain.application import FlightLedger
from domain.financial_event import Status
from domain.pill import status_document as status_from_connection
from domain.ports import CompanyInfo, ConnectionCheck, FixedClock, ReasonCode
from domain.records import RecordKind, parse_correction_line, parse_flight_ended
from tests.factories import amendment, flight
from workers.bootstrap import open_ledger
from workers.selection import checklist, checklist_rows

SESSION_KEY = b"k" * 32
USERS = [
    ("ann-token", "ann", "alpha", ["*"]),
    ("vic-token", "vic", "alpha", ["billing:view"]),
    ("rita-token", "rita", "alpha", ["billing:view", "billing:retry"]),
    ("bea-token", "bea", "beta", ["billing:view", "billing:retry", "billing:admin"]),
]
SIM_ORIGIN = "http://127.0.0.1:18555"


@dataclass
class FakeConnectionService:
    """Test-only stand-in for workers/qbo.py ConnectionService, recording on the real ledger."""

    ledger: FlightLedger
    authorization_url: str = SIM_ORIGIN + "/connect/oauth2?state=s1"
    tested: list[str] = field(default_factory=list)

    def connect(self, school: str) -> tuple[str, str]:
        """Hand out the configured authorization URL."""
        return self.authorization_url, "s1"

    def callback(
        self, school: str, redirect_url: str, operator: str, *, switch_company: bool = False
    ) -> ConnectionCheck:
        """Check the state and record a connection."""
        query = parse_qs(urlsplit(redirect_url).query)
        if query.get("state") != ["s1"]:
            return ConnectionCheck(ok=False, message="state does not match: start again")
        connection = self.ledger.connection(school)
        now = self.ledger.clock.now()
        connection.connect(
            realm=query["realmId"][0],
            company="Sunrise Flight School",
            country="US",
            access_expires_at=now + timedelta(hours=1),
            refresh_expires_at=now + timedelta(days=100),
            hard_expires_at=None,
            actor=operator,
            at=now,
        )
        self.ledger.save(connection)
        return ConnectionCheck(ok=True, company=CompanyInfo("Sunrise Flight School", "US"))

    def test(self, school: str, operator: str) -> ConnectionCheck:
        """A canned successful test."""
        self.tested.append(operator)
        return ConnectionCheck(ok=True, company=CompanyInfo("Sunrise Flight School", "US"))

    def status(self, school: str, now: datetime) -> dict[str, Any]:
        """Read from the aggregate like the real service."""

        return status_from_connection(self.ledger.connection(school), now)

    def disconnect(self, school: str, operator: str) -> None:
        """Record a disconnect."""
        connection = self.ledger.connection(school)
        connection.disconnect(actor=operator, at=self.ledger.clock.now())
        self.ledger.save(connection)


@pytest.fixture
def web_ledger(sqlite_url: str, clock: FixedClock) -> Iterator[FlightLedger]:
    """A ledger on a real SQLite file."""
    ledger = open_ledger(sqlite_url, clock=clock)
    yield ledger
    ledger.close()


@dataclass
class RealView:
    """The stored SQLite view and a refresh hook that catches the real projector up."""

    view: Any
    refresh: Any
    db_url: str


@pytest.fixture
def real_view(sqlite_url: str, web_ledger: FlightLedger) -> Iterator[RealView]:
    """adapters.views.open_view on the ledger's file, with workers.projector.Projector."""
    from adapters.views import open_view
    from workers.projector import Projector

    view = open_view(sqlite_url)
    projector = Projector(web_ledger, view)
    yield RealView(view=view, refresh=projector.catch_up, db_url=sqlite_url)
    view.close()


@pytest.fixture
def service(web_ledger: FlightLedger) -> FakeConnectionService:
    """The connection service double."""
    return FakeConnectionService(web_ledger)


@pytest.fixture
def client(
    web_ledger: FlightLedger, service: FakeConnectionService, real_view: RealView
) -> Iterator[TestClient]:
    """A client of the dashboard in sign-in mode (users file)."""
    users = UserDirectory.from_records(
        [
            {"name": n, "token_sha256": hash_token(t), "school": s, "permissions": p}
            for t, n, s, p in USERS
        ]
    )
    app = create_app(
        ledger=web_ledger,
        view=real_view.view,
        refresh_view=real_view.refresh,
        checklist=lambda school: checklist_rows(
            checklist(web_ledger, real_view.view, parse_database_url(real_view.db_url), school)
        ),
        session_key=SESSION_KEY,
        connections=service,
        users=users,
        authorization_origins=("https://appcenter.intuit.com", SIM_ORIGIN),
    )
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def csrf_of(client: TestClient, path: str = "/login") -> str:
    """The CSRF token embedded in a page's forms."""
    page = client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, f"no csrf field on {path}"
    return found.group(1)


def sign_in(client: TestClient, token: str) -> str:
    """Sign in and return the new session's CSRF token."""
    response = client.post("/login", data={"csrf": csrf_of(client), "token": token})
    assert response.status_code == 303, response.text
    return csrf_of(client, "/")


def action_required_flight(ledger: FlightLedger, school: str, flight_id: str) -> None:
    """A flight blocked on the unmapped aircraft_rental charge code (all else mapped)."""
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


def test_anonymous_visitor_is_sent_to_sign_in(client: TestClient) -> None:
    """Without a session the dashboard redirects to the sign-in page."""
    response = client.get("/")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_wrong_token_is_refused_with_a_sentence(client: TestClient) -> None:
    """A token that matches no user answers 401 with a plain sentence."""
    response = client.post("/login", data={"csrf": csrf_of(client), "token": "nope"})
    assert response.status_code == 401
    assert "not recognised" in response.text


def test_sign_in_shows_user_and_school(client: TestClient) -> None:
    """After sign-in the header names the user and their school."""
    sign_in(client, "vic-token")
    page = client.get("/")
    assert page.status_code == 200
    assert "vic" in page.text and "alpha" in page.text


def test_tampered_session_cookie_is_not_trusted(client: TestClient) -> None:
    """A session cookie whose signature does not match is ignored (back to sign-in)."""
    sign_in(client, "ann-token")
    value = client.cookies.get("flightledger_session")
    assert value is not None
    payload, _, mac = value.rpartition(".")
    client.cookies.clear()  # the tampered value replaces the real one, not sent beside it
    client.cookies.set("flightledger_session", payload + "." + "0" * len(mac))
    assert client.get("/").status_code == 303


def test_dashboard_shows_group_fix_and_qbo_message(
    client: TestClient, web_ledger: FlightLedger
) -> None:
    """An action_required flight appears as a reason group with its fix text and message."""
    action_required_flight(web_ledger, "alpha", "F-1")
    sign_in(client, "vic-token")
    page = client.get("/").text
    assert 'data-reason="missing_mapping"' in page
    assert "Map charge code aircraft_rental to a QuickBooks item, then press Retry Failed" in page
    assert "Charge code aircraft_rental is not mapped to a QuickBooks item" in page
    assert 'action="/retry-failed"' not in page  # a viewer gets no Retry Failed button


def test_viewer_cannot_retry(client: TestClient, web_ledger: FlightLedger) -> None:
    """billing:view alone answers 403 with a sentence to Retry Failed, and nothing is appended."""
    action_required_flight(web_ledger, "alpha", "F-1")
    csrf = sign_in(client, "vic-token")
    response = client.post("/retry-failed", data={"csrf": csrf, "reason": "missing_mapping"})
    assert response.status_code == 403
    assert "billing:retry" in response.text
    assert web_ledger.find("alpha", "F-1").status == Status.ACTION_REQUIRED


def test_retry_blocked_until_mapped_then_requeued(
    client: TestClient, web_ledger: FlightLedger
) -> None:
    """Retry Failed says why it is blocked, and after mapping requeues the group as pending."""
    action_required_flight(web_ledger, "alpha", "F-1")
    csrf = sign_in(client, "rita-token")
    response = client.post("/retry-failed", data={"csrf": csrf, "reason": "missing_mapping"})
    assert response.status_code == 303
    page = client.get("/").text
    assert "0 requeued" in page and "1 blocked" in page and "aircraft_rental" in page
    assert web_ledger.find("alpha", "F-1").status == Status.ACTION_REQUIRED
    web_ledger.map_charge("alpha", "aircraft_rental", "1", operator="ann")
    client.post("/retry-failed", data={"csrf": csrf, "reason": "missing_mapping"})
    page = client.get("/").text
    assert "1 requeued" in page
    assert 'data-reason="missing_mapping"' not in page
    event = web_ledger.find("alpha", "F-1")
    assert event.status == Status.PENDING
    assert web_ledger.history("alpha", "F-1")[-1].actor == "rita"


def test_post_without_csrf_is_refused(client: TestClient, web_ledger: FlightLedger) -> None:
    """A POST without the session's CSRF token answers 403 and changes nothing."""
    action_required_flight(web_ledger, "alpha", "F-1")
    web_ledger.map_charge("alpha", "aircraft_rental", "1", operator="ann")
    sign_in(client, "ann-token")
    for data in ({"reason": "missing_mapping"}, {"reason": "missing_mapping", "csrf": "forged"}):
        response = client.post("/retry-failed", data=data)
        assert response.status_code == 403
        assert "CSRF" in response.text
    assert web_ledger.find("alpha", "F-1").status == Status.ACTION_REQUIRED


def test_login_form_needs_csrf(client: TestClient) -> None:
    """Even sign-in refuses a form that did not come from the page (login CSRF)."""
    response = client.post("/login", data={"token": "ann-token"})
    assert response.status_code == 403


def test_other_school_is_invisible(client: TestClient, web_ledger: FlightLedger) -> None:
    """A beta user sees none of alpha's events and gets 404 for their pages and history."""
    action_required_flight(web_ledger, "alpha", "F-1")
    event_id = web_ledger.find("alpha", "F-1").id
    sign_in(client, "bea-token")
    page = client.get("/").text
    assert "F-1" not in page and "missing_mapping" not in page.split("<select")[0]
    assert client.get(f"/events/{event_id}").status_code == 404
    assert client.get("/events/F-1").status_code == 404
    assert client.get("/events/F-1/history.json").status_code == 404


def test_other_school_cannot_retry_or_dismiss(client: TestClient, web_ledger: FlightLedger) -> None:
    """Retry Failed and Dismiss from another school touch nothing of alpha's."""
    action_required_flight(web_ledger, "alpha", "F-1")
    web_ledger.map_charge("alpha", "aircraft_rental", "1", operator="ann")
    event_id = web_ledger.find("alpha", "F-1").id
    csrf = sign_in(client, "bea-token")
    client.post("/retry-failed", data={"csrf": csrf, "reason": "missing_mapping"})
    response = client.post(f"/events/{event_id}/dismiss", data={"csrf": csrf, "note": "x"})
    assert response.status_code == 404
    assert web_ledger.find("alpha", "F-1").status == Status.ACTION_REQUIRED


def test_event_page_shows_full_history(client: TestClient, web_ledger: FlightLedger) -> None:
    """The per-event page lists every event of its history with the actor."""
    action_required_flight(web_ledger, "alpha", "F-1")
    sign_in(client, "vic-token")
    event_id = web_ledger.find("alpha", "F-1").id
    page = client.get(f"/events/{event_id}").text
    assert "FlightEnded" in page and "ActionRequired" in page and "worker" in page
    assert "Decimal(" not in page and "datetime.datetime" not in page, "plain values only"
    assert "&#34;rate&#34;: &#34;165.00&#34;" in page or '"rate": "165.00"' in page
    history = client.get("/events/F-1/history.json").json()
    assert [h["type"] for h in history] == ["FlightEnded", "ActionRequired"]
    positions = [h["log_position"] for h in history]
    assert all(isinstance(p, int) for p in positions) and positions == sorted(positions)


def test_dismiss_with_note(client: TestClient, web_ledger: FlightLedger) -> None:
    """Dismiss needs billing:retry and a note; the note and operator land in the history."""
    action_required_flight(web_ledger, "alpha", "F-1")
    event_id = web_ledger.find("alpha", "F-1").id
    csrf = sign_in(client, "rita-token")
    empty = client.post(f"/events/{event_id}/dismiss", data={"csrf": csrf, "note": " "})
    assert empty.status_code == 303
    assert web_ledger.find("alpha", "F-1").status == Status.ACTION_REQUIRED
    assert (
        "Not dismissed: note: say why the event will not be sent"
        in client.get(f"/events/{event_id}").text
    )
    client.post(f"/events/{event_id}/dismiss", data={"csrf": csrf, "note": "paid in cash"})
    last = web_ledger.history("alpha", "F-1")[-1]
    assert (last.type, last.actor, last.data["note"]) == ("Dismissed", "rita", "paid in cash")


def test_events_filter_by_status(client: TestClient, web_ledger: FlightLedger) -> None:
    """The events table filters by status."""
    action_required_flight(web_ledger, "alpha", "F-1")
    web_ledger.record("alpha", parse_flight_ended(flight("F-2")))
    sign_in(client, "vic-token")
    table = client.get("/?status=pending").text.split('id="events-table"')[1]
    assert "F-2" in table and "F-1" not in table
    table = client.get("/?reason=missing_mapping").text.split('id="events-table"')[1]
    assert "F-1" in table and "F-2" not in table


def test_connect_redirects_only_to_trusted_url(
    client: TestClient, service: FakeConnectionService
) -> None:
    """Connect follows a trusted authorization URL and refuses others with DESIGN's sentences."""
    csrf = sign_in(client, "ann-token")
    response = client.post("/connect", data={"csrf": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == service.authorization_url
    for bad in (
        "https://evil.example/connect/oauth2",
        "http://appcenter.intuit.com/connect/oauth2",
        "https://appcenter.intuit.com@evil.example/x",
        "https://appcenter.intuit.com.evil.example/x",
        "http://127.0.0.1:9/connect/oauth2",
    ):
        service.authorization_url = bad
        response = client.post("/connect", data={"csrf": csrf})
        assert response.status_code == 502, bad
        assert UNTRUSTED_URL_MESSAGE in response.text, bad
    service.authorization_url = ""
    assert NO_URL_MESSAGE in client.post("/connect", data={"csrf": csrf}).text


def test_connect_needs_admin(client: TestClient) -> None:
    """billing:retry is not enough to connect or disconnect (403 with a sentence)."""
    csrf = sign_in(client, "rita-token")
    for path in ("/connect", "/connect/switch-company", "/disconnect"):
        response = client.post(path, data={"csrf": csrf})
        assert response.status_code == 403
        assert "billing:admin" in response.text


def test_callback_connects_then_verifies(
    client: TestClient, web_ledger: FlightLedger, service: FakeConnectionService
) -> None:
    """The callback records the connection, the card says so once, the test names the company."""
    csrf = sign_in(client, "ann-token")
    page = client.get("/callback?code=c&state=s1&realmId=9130350000000001", follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/settings")  # article 000
    card = client.get("/settings").text
    assert '<strong id="verifying-title">QuickBooks connected! Verifying...</strong>' in card
    assert "verify your account mappings are still set" in card
    result = client.post(
        "/connection/test", data={"csrf": csrf}, headers={"accept": "application/json"}
    ).json()
    assert result == {
        "ok": True,
        "company": "Sunrise Flight School",
        "country": "US",
        "message": "Connected to Sunrise Flight School (US)",
        "status": {
            "pill": "Connected",
            "tone": "green",
            "badge": "100d",
            "company": "Sunrise Flight School",
            "country": "US",
            "badge_tone": "green",
            "qbo_error": None,
            "reconnect": False,
            "reconnect_primary": False,
        },
    }
    dashboard = client.get("/").text
    assert "Verifying..." not in dashboard, "the verifying note shows once, after the callback"
    assert 'id="pill">Connected<' in dashboard and "100d" in dashboard
    expires = web_ledger.clock.now() + timedelta(days=100)
    assert f"expires {expires:%Y-%m-%d %H:%M} UTC" in dashboard, "read as staff read a time"
    assert web_ledger.connection("alpha").realm == "9130350000000001"


def test_callback_with_wrong_state_shows_reason(client: TestClient) -> None:
    """A callback whose state does not match shows the service's reason, not a traceback."""
    sign_in(client, "ann-token")
    page = client.get("/callback?code=c&state=evil&realmId=1")
    assert "state does not match" in page.text
    assert "Traceback" not in page.text


def test_expired_connection_shows_reconnect_panel(
    client: TestClient, web_ledger: FlightLedger, clock: FixedClock
) -> None:
    """An expired refresh token shows DESIGN's panel texts, the red pill and a Reconnect button."""
    connection = web_ledger.connection("alpha")
    connection.connect(
        realm="9130350000000001",
        company="Sunrise Flight School",
        country="US",
        access_expires_at=clock.now(),
        refresh_expires_at=clock.now() + timedelta(days=2),
        hard_expires_at=None,
        actor="ann",
        at=clock.now(),
    )
    web_ledger.save(connection)
    sign_in(client, "ann-token")
    page = client.get("/").text
    assert 'id="pill">2d left<' in page and "tone-red" in page and "2d • reconnect" in page
    clock.advance(3 * 86400)
    page = client.get("/").text
    assert "QuickBooks needs to be reconnected" in page
    assert "Your refresh token has expired. Reconnect to keep invoicing through QuickBooks." in page
    assert 'id="reconnect"' in page


def test_disconnect_by_admin(client: TestClient, web_ledger: FlightLedger) -> None:
    """An admin's Disconnect reaches the service and the pill returns to Not connected."""
    csrf = sign_in(client, "ann-token")
    client.get("/callback?code=c&state=s1&realmId=1")
    response = client.post("/disconnect", data={"csrf": csrf})
    assert response.status_code == 303
    assert 'id="pill">Not connected<' in client.get("/").text


def test_sign_out_ends_the_session(client: TestClient) -> None:
    """After Sign out the dashboard asks for sign-in again."""
    csrf = sign_in(client, "vic-token")
    client.post("/logout", data={"csrf": csrf})
    assert client.get("/").status_code == 303


def test_local_operator_mode(web_ledger: FlightLedger, real_view: RealView) -> None:
    """Without users the single local operator acts with all permissions and the header says so."""
    app = create_app(
        ledger=web_ledger,
        view=real_view.view,
        refresh_view=real_view.refresh,
        session_key=SESSION_KEY,
        local_user=local_operator("alpha"),
    )
    action_required_flight(web_ledger, "alpha", "F-1")
    web_ledger.map_charge("alpha", "aircraft_rental", "1", operator="setup")
    with TestClient(app, follow_redirects=False) as local:
        page = local.get("/").text
        assert "Local operator mode" in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        local.post("/retry-failed", data={"csrf": csrf.group(1), "reason": "missing_mapping"})
    assert web_ledger.find("alpha", "F-1").status == Status.PENDING
    assert web_ledger.history("alpha", "F-1")[-1].actor == "local-operator"


def test_connect_without_service_is_a_stated_refusal(
    web_ledger: FlightLedger, real_view: RealView
) -> None:
    """With no connection service the card says what to set, and Connect answers 503 so."""
    app = create_app(
        ledger=web_ledger,
        view=real_view.view,
        refresh_view=real_view.refresh,
        session_key=SESSION_KEY,
        local_user=local_operator("alpha"),
    )
    with TestClient(app, follow_redirects=False) as local:
        page = local.get("/").text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert csrf is not None
        response = local.post("/connect", data={"csrf": csrf.group(1)})
    assert 'id="connect"' not in page, "no Connect button that can only fail"
    assert "no connection service" not in page
    card = page.split('id="connect-unavailable"')[1].split("</p>")[0]
    assert "FLIGHTLEDGER_SECRET_KEY" in card and "FLIGHTLEDGER_QBO_CLIENT_ID" in card
    assert response.status_code == 503
    assert "FLIGHTLEDGER_SECRET_KEY" in response.text


def test_setup_checklist_says_what_to_do(client: TestClient, web_ledger: FlightLedger) -> None:
    """The checklist flags the unmapped charge code and clears it once mapped."""
    action_required_flight(web_ledger, "alpha", "F-1")
    sign_in(client, "vic-token")
    section = client.get("/").text.split('id="checklist"')[1].split("</section>")[0]
    assert "Map charge code aircraft_rental to a QuickBooks item" in section
    assert "Connect QuickBooks" in section
    web_ledger.map_charge("alpha", "aircraft_rental", "1", operator="ann")
    section = client.get("/").text.split('id="checklist"')[1].split("</section>")[0]
    assert "aircraft_rental" not in section


SETTINGS_POSTS = {
    "/settings/defaults": {"term": "3", "memo": "Thanks", "income_account": "79"},
    "/settings/mappings/charge": {"code": "fuel", "item": "3"},
    "/settings/mappings/student": {"student": "S-7", "customer": "1"},
    "/settings/mappings/payment-type": {"name": "card", "deposit_account": "35"},
    "/settings/auto-invoice": {"state": "off"},
    "/settings/auto-customers": {"state": "on"},
    "/settings/refresh-lists": {},
}


def test_settings_need_billing_admin(client: TestClient, web_ledger: FlightLedger) -> None:
    """billing:view and billing:retry see no settings or retry controls and get 403 on POSTs."""
    action_required_flight(web_ledger, "alpha", "F-1")
    for token in ("vic-token", "rita-token"):
        csrf = sign_in(client, token)
        assert client.get("/settings").status_code == 403
        for path, data in SETTINGS_POSTS.items():
            response = client.post(path, data={"csrf": csrf, **data})
            assert response.status_code == 403, path
            assert "billing:admin" in response.text
        dashboard = client.get("/").text
        assert 'href="/settings"' not in dashboard
        assert "flightledger mappings" not in dashboard, "no command line for office staff"
    sign_in(client, "vic-token")
    assert 'action="/retry-failed"' not in client.get("/").text
    assert web_ledger.mappings("alpha").charges == {"instructor_dual": "2"}, "nothing recorded"
    assert web_ledger.settings("alpha").auto_invoice is True
    assert web_ledger.settings("alpha").auto_customers is False


def test_settings_posts_are_csrf_checked(client: TestClient, web_ledger: FlightLedger) -> None:
    """Every settings POST without this session's CSRF token is refused and records nothing."""
    sign_in(client, "ann-token")
    for path, data in SETTINGS_POSTS.items():
        response = client.post(path, data={"csrf": "forged", **data})
        assert response.status_code == 403, path
        assert "CSRF check failed" in response.text
    assert web_ledger.mappings("alpha").charges == {}


def test_settings_record_through_the_ledger_with_the_cli_messages(
    client: TestClient, web_ledger: FlightLedger
) -> None:
    """An admin's settings POSTs record mappings with the operator; bad input is named."""
    csrf = sign_in(client, "ann-token")
    for path, data in SETTINGS_POSTS.items():
        if path != "/settings/refresh-lists":
            assert client.post(path, data={"csrf": csrf, **data}).status_code == 303
    mappings = web_ledger.mappings("alpha")
    assert (mappings.charges, mappings.students) == ({"fuel": "3"}, {"S-7": "1"})
    assert mappings.payment_types["card"].deposit_account_id == "35"
    assert (mappings.term_id, mappings.memo, mappings.income_account_id) == ("3", "Thanks", "79")
    assert web_ledger.settings("alpha").auto_invoice is False
    assert web_ledger.settings("alpha").auto_customers is True
    assert {e.actor for e in web_ledger.history("alpha", "mappings")[1:]} == {"ann"}
    client.post("/settings/mappings/charge", data={"csrf": csrf, "code": "fuel", "item": " "})
    page = client.get("/settings").text
    assert "Not saved: QuickBooks item: must be a QuickBooks id of 1-64 printable characters" in (
        page
    )
    client.post("/settings/defaults", data={"csrf": csrf, "term": "3", "income_account": "79"})
    assert "Not saved: Default memo: must be 1-1000 characters" in client.get("/settings").text
    history = client.get("/settings").text.split('id="settings-history"')[1]
    assert "Auto-invoice off" in history and "ann" in history
    assert "New students become QuickBooks customers by themselves: on" in history
    assert web_ledger.mappings("alpha").charges == {"fuel": "3"}, "refused input recorded nothing"


def test_event_page_and_events_tab_show_quickbooks_amount_and_pending_correction(
    client: TestClient, web_ledger: FlightLedger
) -> None:
    """A synced flight amended: the page says what QuickBooks holds and that the amendment waits."""
    web_ledger.record("alpha", parse_flight_ended(flight("F-1")))
    event = web_ledger.find("alpha", "F-1")
    now = web_ledger.clock.now()
    event.start_push(request_id="r", doc_number="FL-F-1", batched=False, actor="w", at=now)
    event.mark_synced(qbo_id="7", doc_number="FL-F-1", actor="w", at=now)
    web_ledger.save(event)
    sign_in(client, "vic-token")
    page = client.get("/events/F-1").text
    assert "Amount in QuickBooks: 270.00 USD</dd>" in page  # in line: nothing pending
    amended = amendment("F-1", "1.0")
    assert web_ledger.record_correction(
        "alpha", parse_correction_line(RecordKind.FLIGHT_AMENDED, json.dumps(amended))
    )
    page = client.get("/events/F-1").text
    assert "Amount in QuickBooks: 270.00 USD · Correction pending: amendment</dd>" in page
    assert "<dt>Amount</dt><dd>225.00 USD</dd>" in page
    tab = client.get("/").text
    assert 'title="QuickBooks holds 270.00">amendment pending</small>' in tab


def test_banner_and_names_come_from_the_view_counters(
    client: TestClient, web_ledger: FlightLedger
) -> None:
    """The banner says flights while every waiting event is one, events once a payment waits
    too; the events tab names each student from the view's students table."""
    from domain.records import parse_payment_received
    from tests.factories import payment

    action_required_flight(web_ledger, "alpha", "F-1")
    action_required_flight(web_ledger, "alpha", "F-2")
    sign_in(client, "vic-token")
    page = client.get("/").text
    assert "QuickBooks sync needs attention: 2 flights" in page
    assert "Student S-7" in page
    web_ledger.record("alpha", parse_payment_received(payment("P-1", "S-8")))
    paid = web_ledger.find("alpha", "P-1")
    paid.require_action(
        reason_code=ReasonCode.MISSING_MAPPING,
        message="Student S-8 is not mapped",
        missing=["student:S-8"],
        actor="worker",
        at=web_ledger.clock.now(),
    )
    web_ledger.save(paid)
    page = client.get("/").text
    assert "QuickBooks sync needs attention: 3 events" in page
    assert "Student S-8" in page
