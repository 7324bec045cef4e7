"""Dashboard safety in a real browser (issue 9): DNS rebinding, cross-site POST, logout, headers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.views import open_view
from adapters.web.app import create_app
from adapters.web.auth import UserDirectory, hash_token
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.serve_stack import free_port, serving
from tests.e2e.test_dashboard_browser import FakeConnectionService, LiveServer, live_server
from workers.bootstrap import open_ledger
from workers.commands.serve import allowed_hosts
from workers.projector import Projector

__all__ = ["live_server"]  # fixture used by name


@pytest.fixture
def signin_server(sqlite_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """uvicorn serving the sign-in dashboard (users file: ann, token 'ann-token')."""
    users = tmp_path / "users.json"
    users.write_text(
        json.dumps(
            [{"name": "ann", "token_sha256": hash_token("ann-token"), "school": "alpha",
              "permissions": ["*"]}]
        )
    )  # fmt: skip
    ledger = open_ledger(sqlite_url)
    view = open_view(sqlite_url)
    app = create_app(
        ledger=ledger,
        view=view,
        refresh_view=Projector(ledger, view).catch_up,
        session_key=os.urandom(32),
        connections=FakeConnectionService(ledger),
        users=UserDirectory.from_file(users),
        allowed_hosts=allowed_hosts("127.0.0.1", {}),
    )
    try:
        with serving(app, free_port()) as url:
            yield LiveServer(url=url, ledger=ledger)
    finally:
        ledger.close()


def test_dns_rebinding_gets_no_page(browser_available: bool, live_server: LiveServer) -> None:
    """A name re-resolved to 127.0.0.1 (rebinding) loads a 400 refusal, not the dashboard."""
    from playwright.sync_api import sync_playwright

    port = live_server.url.rsplit(":", 1)[1]
    rules = "--host-resolver-rules=MAP rebind.example 127.0.0.1"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rules])
        try:
            tab = chromium.new_page()
            response = tab.goto(f"http://rebind.example:{port}/")
            assert response is not None and response.status == 400
            assert "does not answer to the host" in tab.content()
            assert tab.locator('meta[name="csrf-token"]').count() == 0
            own = tab.goto(f"http://127.0.0.1:{port}/")
            assert own is not None and own.status == 200
        finally:
            chromium.close()


def test_a_form_on_another_origin_cannot_post(live_server: LiveServer, page: Any) -> None:
    """A page on another origin (same site, other port) posting with a stolen token gets 403."""
    page.goto(live_server.url + "/")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    evil = f"http://127.0.0.1:{free_port()}/evil"
    html = (
        f'<form method="post" action="{live_server.url}/disconnect">'
        f'<input type="hidden" name="csrf" value="{token}">'
        '<button id="go" type="submit">Win a prize</button></form>'
    )
    page.route(evil, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    page.goto(evil)
    with page.expect_response(live_server.url + "/disconnect") as posted:
        page.click("#go")
    assert posted.value.status == 403
    assert "came from another site" in page.content()


def test_the_dashboard_cannot_be_framed_and_runs_no_inline_script(
    live_server: LiveServer, page: Any
) -> None:
    """CSP/X-Frame-Options block framing by another site; the page raises no CSP violation."""
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else 0)
    response = page.goto(live_server.url + "/")
    assert response is not None
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    page.get_by_role("button", name="Connect to QuickBooks").click()  # card.js runs under CSP
    page.wait_for_selector("#message")
    assert violations == []
    framer = f"http://127.0.0.1:{free_port()}/framer"
    html = f'<iframe id="f" src="{live_server.url}/"></iframe>'
    page.route(framer, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    page.goto(framer)
    page.wait_for_load_state("load")
    child = page.frames[-1]
    assert child is not page.main_frame
    assert "flightledger" not in child.content()


def test_sign_out_ends_the_session_for_a_replayed_cookie(
    signin_server: LiveServer, browser: Any
) -> None:
    """Sign out in the browser; the cookie copied before it opens nothing in another browser."""
    first = browser.new_context()
    second = browser.new_context()
    try:
        tab = first.new_page()
        tab.goto(signin_server.url + "/")
        tab.fill("#token", "ann-token")
        tab.get_by_role("button", name="Sign in").click()
        tab.wait_for_selector("#who")
        stolen = first.cookies()
        second.add_cookies(stolen)
        other = second.new_page()
        other.goto(signin_server.url + "/")
        assert other.locator("#who").count() == 1  # the copy works while signed in
        tab.get_by_role("button", name="Sign out").click()
        tab.wait_for_url("**/login")
        other.goto(signin_server.url + "/")
        assert "/login" in other.url and other.locator("#who").count() == 0
        cookie = next(c for c in stolen if c["name"] == "flightledger_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    finally:
        first.close()
        second.close()
