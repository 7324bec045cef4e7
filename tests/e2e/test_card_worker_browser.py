"""The QuickBooks card and the audit page in a real browser, against `flightledger serve` and a
`flightledger worker` subprocess left running: QuickBooks answers 403 (the app lost access), the
card turns red with QuickBooks' own words, Test Connection re-checks, Retry Failed recovers; the
auditor downloads the export and runs the tamper check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serve_stack import SCHOOL, Stack, dashboard_in_thread, wait_for
from tests.factories import flight
from tests.helpers_qbo import (
    Cli,
    assert_one_invoice_each,
    connect_via_cli,
    map_via_cli,
    record_via_cli,
)
from tests.integration.test_audit import _tamper
from tests.integration.test_company_switch import _leave_uncertain_in_a

pytestmark = pytest.mark.timeout(180)
FORBIDDEN = "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403"


def _status(cli: Cli, ref: str) -> tuple[str, str | None]:
    row = next(r for r in cli.ok("events") if r["reference"] == ref)
    return row["status"], row["reason_code"]


def test_the_card_through_a_403_a_revoked_token_a_reconnect_and_a_disconnect(
    stack_with_worker: Stack, page: Any
) -> None:
    """Help article 000 against a running worker. A 403 ApplicationAuthorizationFailed on its
    push: the pill no longer says "Connected", the red panel quotes QuickBooks, Reconnect is the
    primary action; Test Connection shows the failure inline and as a notice. Access back,
    Retry Failed: the worker sends the flight once and its success ends the error (green, no
    panel, the CLI agrees) without a connection test. A revoked refresh token: Reconnect pill,
    badge and panel; Reconnect QuickBooks returns to Invoicing Settings verifying, and the
    automatic test, answered 403, shows the red panel and Reconnect without a reload; access
    back, Test Connection: Connected. Disconnect: no company or badge."""
    from playwright.sync_api import Route, expect

    stack = stack_with_worker
    cli, sim, worker = stack.cli, stack.sim, stack.worker
    assert worker is not None
    connect_via_cli(cli)
    map_via_cli(cli, {"aircraft_rental": "1", "instructor_dual": "2"}, {"S-1": "1"})
    page.goto(stack.url + "/")
    expect(page.locator("#pill")).to_have_text("Connected")
    expect(page.locator("#pill")).to_have_class("pill tone-green")

    sim.set_faults(force_error={"preset": "authz_3100", "on": "any", "count": 1000})
    record_via_cli(cli, stack.tmp / "f1.jsonl", [flight("F-1", "S-1")])
    wait_for(
        "the 403 to stop the flight",
        lambda: _status(cli, "F-1") == ("action_required", "auth_failed"),
        worker,
    )

    page.goto(stack.url + "/")
    expect(page.locator("#pill")).to_have_text("Connection error")
    expect(page.locator("#pill")).to_have_class("pill tone-red")
    expect(page.locator("#connection-error strong")).to_have_text("QuickBooks connection error")
    expect(page.locator("#connection-error-message")).to_contain_text(FORBIDDEN)
    expect(page.locator("#connection-panel")).not_to_contain_text("QuickBooks said")
    expect(page.locator("#badge")).to_have_text("100d")  # the token itself is still good
    expect(page.locator("#badge")).to_have_class("badge tone-green")
    reconnect = page.locator("#reconnect")
    expect(reconnect).to_have_text("Reconnect QuickBooks")
    expect(reconnect).not_to_have_class("secondary")
    assert cli.ok("connection", "status")["pill"] == "Connection error"

    # Test Connection while QuickBooks still refuses: its message inline and as a notice
    page.get_by_role("button", name="Test Connection").click()
    expect(page.locator("#flash")).to_have_class("flash bad")
    expect(page.locator("#flash")).to_contain_text(FORBIDDEN)
    expect(page.locator("#connection-error-message")).to_contain_text(FORBIDDEN)
    expect(page.locator("#pill")).to_have_text("Connection error")

    # access restored, no Test Connection: the worker's next push succeeds and that ends it
    sim.set_faults(force_error=None)
    group = page.locator('article.group[data-reason="auth_failed"]')
    expect(group).to_contain_text("1 event")
    group.get_by_role("button", name="Retry Failed").click()
    expect(page.locator("#flash")).to_contain_text("1 requeued")
    expect(page.locator("#pill")).to_have_text("Connection error")  # nothing synced yet
    wait_for("the retried flight to sync", lambda: _status(cli, "F-1")[0] == "synced", worker)
    assert_one_invoice_each(sim.invoices(), {"FL-F-1"})
    status = wait_for(
        "the worker to end the error",
        lambda: (s := cli.ok("connection", "status"))["pill"] == "Connected" and s,
        worker,
    )
    assert (status["tone"], status["last_error"]) == ("green", None)
    types = [e["type"] for e in cli.ok("history", "connection")]
    assert types[-2:] == ["ConnectionTested", "CallsSucceeded"], types  # the failed test, then
    page.goto(stack.url + "/")
    expect(page.locator("#pill")).to_have_text("Connected")
    expect(page.locator("#pill")).to_have_class("pill tone-green")
    expect(page.locator("#connection-error")).to_have_count(0)
    expect(page.locator("#connection-panel form[action='/connect'] button")).to_have_class(
        "secondary"
    )

    # the refresh token is revoked: Reconnect, the expired panel, QuickBooks' own words
    sim.set_faults(revoke_refresh_tokens=True, expire_access_tokens_now=True)
    record_via_cli(cli, stack.tmp / "f2.jsonl", [flight("F-2", "S-1")])
    wait_for(
        "the revoked token to stop the flight",
        lambda: _status(cli, "F-2") == ("action_required", "auth_expired"),
        worker,
    )
    page.goto(stack.url + "/")
    expect(page.locator("#pill")).to_have_text("Reconnect")
    expect(page.locator("#pill")).to_have_class("pill tone-red")
    expect(page.locator("#badge")).to_have_text("Reconnect")
    expect(page.locator("#badge")).to_have_class("badge tone-red")
    expect(page.locator("#expires")).to_have_count(0)  # a revoked token's date means nothing
    expect(page.locator("#reconnect-alert strong")).to_have_text(
        "QuickBooks needs to be reconnected"
    )
    expect(page.locator("#reconnect-alert p")).to_have_text(
        "Your refresh token has expired. Reconnect to keep invoicing through QuickBooks."
    )
    expect(page.locator("#connection-error-message")).to_contain_text("invalid_grant")

    # Reconnect QuickBooks: back on Invoicing Settings, verifying; QuickBooks answers the
    # automatic test (card.js's, after the callback's own passed) with a 403: the card says so
    # as a reload would, without one
    def refuse_the_test(route: Route) -> None:
        sim.set_faults(force_error={"preset": "authz_3100", "on": "any", "count": 1000})
        route.continue_()

    page.route(stack.url + "/connection/test", refuse_the_test)
    page.get_by_role("button", name="Reconnect QuickBooks").click()
    expect(page.locator("h1")).to_have_text("Invoicing settings")
    expect(page.locator("#verifying-title")).to_have_text("QuickBooks connected! Verifying...")
    expect(page.locator("#test-result")).to_contain_text(FORBIDDEN)
    expect(page.locator("#test-result")).to_have_class("bad")
    expect(page.locator("#connection-error")).to_be_visible()
    expect(page.locator("#connection-error strong")).to_have_text("QuickBooks connection error")
    expect(page.locator("#connection-error-message")).to_contain_text(FORBIDDEN)
    expect(page.locator("#reconnect-alert")).to_be_hidden()  # the new token is good
    expect(page.locator("#pill")).to_have_text("Connection error")
    expect(page.locator("#pill")).to_have_class("pill tone-red")
    expect(page.locator("#badge")).to_have_class("badge tone-green")
    reconnect = page.locator("#reconnect")
    expect(reconnect).to_have_text("Reconnect QuickBooks")
    expect(reconnect).not_to_have_class("secondary")
    expect(page.locator("#verify-mappings")).to_be_visible()
    page.unroute(stack.url + "/connection/test")

    # access restored: Test Connection succeeds and the card is healthy again
    sim.set_faults(force_error=None)
    page.get_by_role("button", name="Test Connection").click()
    expect(page.locator("#flash")).to_have_text("Connected to Sunrise Flight School (US)")
    expect(page.locator("#pill")).to_have_text("Connected")
    expect(page.locator("#pill")).to_have_class("pill tone-green")
    expect(page.locator("#badge")).to_have_class("badge tone-green")
    expect(page.locator("#connection-panel form[action='/connect'] button")).to_have_class(
        "secondary"
    )
    expect(page.locator("#reconnect-alert")).to_have_count(0)
    expect(page.locator("#connection-error")).to_have_count(0)
    page.locator('article.group[data-reason="auth_expired"]').get_by_role(
        "button", name="Retry Failed"
    ).click()
    expect(page.locator("#flash")).to_contain_text("1 requeued")
    wait_for("the reconnected flight to sync", lambda: _status(cli, "F-2")[0] == "synced", worker)
    assert_one_invoice_each(sim.invoices(), {"FL-F-1", "FL-F-2"})

    # Disconnect (after its confirm): no Connected Account company or badge any more
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Disconnect").click()
    expect(page.locator("#flash")).to_have_text(
        "QuickBooks disconnected: tokens revoked and forgotten."
    )
    expect(page.locator("#pill")).to_have_text("Not connected")
    expect(page.locator("#pill")).to_have_class("pill tone-grey")
    panel = page.locator("#connection-panel")
    expect(panel).not_to_contain_text("Connected Account")
    expect(panel).not_to_contain_text("Sunrise Flight School")
    expect(page.locator("#badge")).to_have_count(0)
    expect(page.locator("#test-connection")).to_have_count(0)
    expect(page.locator("#connect")).to_have_text("Connect to QuickBooks")
    expect(page.locator("#connect")).not_to_have_class("secondary")
    assert worker.poll() is None, "the same worker did it all"


def test_audit_page_downloads_the_export_and_tells_the_tamper_verdict(
    stack: Stack, page: Any, sqlite_url: str
) -> None:
    """The auditor downloads this school's log (JSONL and CSV, a date range), runs the tamper
    check (intact), and after a stored event is edited behind flightledger's back, the check
    says where the log was changed."""
    from playwright.sync_api import expect

    cli = stack.cli
    record_via_cli(cli, stack.tmp / "f.jsonl", [flight("F-1", "S-1"), flight("F-2", "S-2")])
    cli.ok("settings", "auto-invoice", "off", school="elsewhere")  # another school's fact

    page.goto(stack.url + "/audit")
    expect(page.locator("h1")).to_have_text("Audit")
    with page.expect_download() as got:
        page.get_by_role("button", name="Download").click()
    download = got.value
    assert download.suggested_filename == f"flightledger-audit-{SCHOOL}-start-now.jsonl"
    lines = [json.loads(line) for line in Path(download.path()).read_text().splitlines()]
    assert lines, "the export is empty"
    text = json.dumps(lines)
    assert "F-1" in text and "F-2" in text
    assert "elsewhere" not in text, "another school's facts leaked into the export"
    assert not [e for e in lines if e.get("school") not in (None, SCHOOL)]

    page.get_by_label("From").fill("2000-01-01")
    page.get_by_label("To").fill("2000-01-31")
    page.get_by_label("Format").select_option("csv")
    with page.expect_download() as got:
        page.get_by_role("button", name="Download").click()
    download = got.value
    assert download.suggested_filename == f"flightledger-audit-{SCHOOL}-2000-01-01-2000-01-31.csv"
    rows = Path(download.path()).read_text().splitlines()
    assert len(rows) <= 1, "a range before anything happened holds no events"

    page.get_by_role("button", name="Run the tamper check").click()
    expected = cli.ok("audit", "verify")["events"]  # the same check through the CLI
    expect(page.locator("#verdict")).to_have_text(
        f"The log is intact: {expected} events checked against the audit hash chain."
    )
    expect(page.locator("#verdict")).to_have_class("ok")

    _tamper(sqlite_url, 2)
    page.get_by_role("button", name="Run the tamper check").click()
    expect(page.locator("#verdict")).to_have_class("bad")
    expect(page.locator("#verdict")).to_contain_text("The log was changed:")
    expect(page.locator("#flash")).to_contain_text("Tamper check failed")
    bad = cli.full("audit", "verify")
    assert bad.code == 1 and bad.data["ok"] is False
    expect(page.locator("#verdict")).to_contain_text(str(bad.data["message"]))


OTHER_REALM = "9130350000000777"


def test_reconnecting_another_company_asks_the_admin_and_shows_what_may_be_in_the_old_one(
    stack: Stack, page: Any, sqlite_url: str
) -> None:
    """Issue 8 in the dashboard: a school with invoices in A that connects B is refused with
    "This school's invoices are in A; you connected B", the page lists the record that may
    already be in A, "Keep A" changes nothing, and the explicit switch button moves the school
    to B with that record held under Action Required (company_switched)."""
    from playwright.sync_api import Route, expect

    cli, sim = stack.cli, stack.sim
    sim.add_company(OTHER_REALM, "Other Aviation LLC")
    connect_via_cli(cli)
    map_via_cli(cli, {"aircraft_rental": "1", "instructor_dual": "2"}, {"S-1": "1"})
    record_via_cli(cli, stack.tmp / "f1.jsonl", [flight("F-1", "S-1")])
    assert cli.ok("worker", "--until-idle", "--max-seconds", "60")["synced"] == 1
    record_via_cli(cli, stack.tmp / "f2.jsonl", [flight("F-2", "S-1")])
    _leave_uncertain_in_a(cli, sim, sqlite_url)  # F-2 created in A, its answer lost

    def pick_company_b(route: Route) -> None:
        """The admin picks company B at Intuit: the authorize URL /connect redirects to
        (redirects are not routed themselves) gains the simulator's realm hint."""
        answer = route.fetch(max_redirects=0)
        location = answer.headers.get("location", "")
        if answer.status == 303 and location.startswith(sim.url + "/connect/oauth2"):
            headers = {**answer.headers, "location": location + "&realm_hint=" + OTHER_REALM}
            route.fulfill(response=answer, headers=headers)
        else:
            route.fulfill(response=answer)

    page.route(stack.url + "/connect**", pick_company_b)
    page.goto(stack.url + "/")
    page.get_by_role("button", name="Connect to QuickBooks").click()
    expect(page.locator("h1")).to_have_text("Switch QuickBooks company?")
    expect(page.locator("#message")).to_have_text(
        "This school's invoices are in Sunrise Flight School; you connected Other Aviation LLC."
    )
    expect(page.locator("#held-title")).to_have_text(
        "1 record may already be in Sunrise Flight School"
    )
    expect(page.locator("#held tbody tr")).to_have_count(1)
    expect(page.locator('#held tr[data-ref="F-2"]')).to_contain_text("F-2")
    assert cli.ok("connection", "status")["realm"] == sim.config.realm, "nothing changed yet"

    page.get_by_role("link", name="Keep Sunrise Flight School").click()
    expect(page.locator("#company")).to_contain_text("Sunrise Flight School")
    assert cli.ok("connection", "status")["realm"] == sim.config.realm

    page.get_by_role("button", name="Connect to QuickBooks").click()
    page.get_by_role("button", name="Switch this school to Other Aviation LLC").click()
    expect(page.locator("#verifying-title")).to_have_text("QuickBooks connected! Verifying...")
    expect(page.locator("#flash")).to_contain_text("This school now invoices in Other Aviation LLC")
    expect(page.locator("#test-result")).to_have_text("Connected to Other Aviation LLC (US)")
    expect(page.locator("#company")).to_contain_text("Other Aviation LLC")
    expect(page.locator("h1")).to_have_text("Invoicing settings")  # where article 000 returns
    page.goto(stack.url + "/")
    group = page.locator('article.group[data-reason="company_switched"]')
    expect(group).to_contain_text("1 event")
    status = cli.ok("connection", "status")
    assert (status["realm"], status["pill"]) == (OTHER_REALM, "Connected")
    held = cli.ok("events", "--reason", "company_switched")
    assert [r["reference"] for r in held] == ["F-2"]
    assert sim.invoices(OTHER_REALM) == [], "nothing was created again in B by itself"

    # a callback no connection here started (forged or replayed): said with the page's buttons
    page.goto(stack.url + "/qbo/callback?code=x&state=forged&realmId=" + OTHER_REALM)
    expect(page.locator("h1")).to_have_text("QuickBooks did not connect")
    expect(page.locator("#message")).to_contain_text("does not match a connection started here")
    expect(page.locator("#message")).to_contain_text("press Connect to QuickBooks again")
    expect(page.locator("#connect-refused")).not_to_contain_text("run '")
    expect(page.get_by_role("button", name="Retry Connect to QuickBooks")).to_be_visible()


@pytest.mark.parametrize(
    ("sim_config", "pill", "tone", "badge"),
    [
        ({"authorization_endpoint": False}, None, None, None),
        ({"refresh_token_seconds": 3600}, "0d left", "red", "Reconnect soon"),
        ({"report_refresh_expiry": False}, "Connected", "green", "Token unknown"),
    ],
    ids=["no-authorization-url", "reconnect-soon", "token-unknown"],
)
def test_simulator_flags_reach_the_card_in_the_articles_words(
    sqlite_url: str,
    page: Any,
    sim_config: dict[str, Any],
    pill: str | None,
    tone: str | None,
    badge: str | None,
) -> None:
    """Connecting from the card to a simulator started with these settings (no patching):
    no authorization endpoint -> "No authorization URL received from QuickBooks" and no
    navigation; an hour-long refresh token -> "0d left" / "Reconnect soon"; no refresh expiry
    in the token answer -> "Token unknown"."""
    from playwright.sync_api import expect

    with dashboard_in_thread(sqlite_url, sim_config) as url:
        page.goto(url + "/")
        page.get_by_role("button", name="Connect to QuickBooks").click()
        if pill is None:
            expect(page.locator("h1")).to_have_text("Cannot connect to QuickBooks")
            expect(page.locator("#message")).to_have_text(
                "No authorization URL received from QuickBooks"
            )
            assert page.url.startswith(url)
            page.get_by_role("button", name="Retry Connect to QuickBooks").click()  # article
            expect(page.locator("#message")).to_have_text(
                "No authorization URL received from QuickBooks"
            )
            page.goto(url + "/")
            expect(page.locator("#pill")).to_have_text("Not connected")
            return
        expect(page.locator("#test-result")).to_have_text("Connected to Sunrise Flight School (US)")
        expect(page.locator("#pill")).to_have_text(pill)
        expect(page.locator("#pill")).to_have_class(f"pill tone-{tone}")
        expect(page.locator("#badge")).to_have_text(badge)
        page.reload()  # the server's rendering, not only card.js's update
        expect(page.locator("#pill")).to_have_text(pill)
        expect(page.locator("#badge")).to_have_text(badge)
        expect(page.locator("#badge")).to_have_class(f"badge tone-{tone}")
        if badge == "Token unknown":
            expect(page.locator("#expires")).to_have_count(0)
