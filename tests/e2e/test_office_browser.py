"""The office manager's day in a real browser, against `flightledger serve` and a running
`flightledger worker` subprocess: connect -> verifying -> mappings chosen from QuickBooks' own
lists by name -> a day of flights -> fix the Action Required group -> Retry Failed -> synced
-> a new student invoiced with no manual mapping (auto-customers switched on in the page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serve_stack import Stack, wait_for
from tests.factories import flight
from tests.helpers_qbo import assert_one_invoice_each, record_via_cli

pytestmark = pytest.mark.timeout(240)


def test_a_day_at_the_office_in_the_browser(
    stack_with_worker: Stack, page: Any, tmp_path: Path
) -> None:
    """Connect, map from QuickBooks' lists by name, fix the blocked group, Retry Failed: synced."""
    from playwright.sync_api import expect

    stack = stack_with_worker
    url, cli, sim, worker = stack.url, stack.cli, stack.sim, stack.worker
    assert worker is not None
    page.goto(url + "/")
    page.get_by_role("button", name="Connect to QuickBooks").click()
    expect(page.locator("#verifying-title")).to_have_text("QuickBooks connected! Verifying...")
    expect(page.locator("#test-result")).to_have_text("Connected to Sunrise Flight School (US)")
    expect(page.locator("#pill")).to_have_text("Connected")
    # the callback returned to Invoicing Settings (article 000): verify the mappings below
    expect(page.locator("h1")).to_have_text("Invoicing settings")
    page.locator("#verify-mappings").get_by_role("link", name="QuickBooks Defaults").click()

    # QuickBooks Defaults, chosen by name from QuickBooks' own lists
    page.get_by_label("Term").select_option(label="Net 30")
    page.get_by_label("Default memo").fill("Thank you for flying with us")
    page.get_by_label("Income account").select_option(label="Flight income")
    page.get_by_role("button", name="Save defaults").click()
    expect(page.locator("#flash")).to_have_text("QuickBooks Defaults saved.")
    expect(page.locator("#settings-history")).to_contain_text(
        "QuickBooks Defaults: term Net 30, memo “Thank you for flying with us”, "
        "income account Flight income"
    )
    # inactive QuickBooks objects are not offered unless asked for, and refused when picked
    expect(page.locator("#new-item option", has_text="Old rental")).to_have_count(0)
    page.get_by_role("link", name="Include inactive").first.click()
    page.get_by_label("New charge code").fill("old_rental")
    page.locator("#new-item").select_option(label="Old rental (inactive)")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#flash")).to_have_text(
        "Not saved: QuickBooks item: QuickBooks item 5 (Old rental) is inactive in QuickBooks: "
        "choose an active one"
    )

    # a day of flights: nothing mapped yet, the running worker blocks them
    refs = {"F-1", "F-2", "F-3"}
    record_via_cli(
        cli,
        tmp_path / "day.jsonl",
        [flight("F-1", "S-1"), flight("F-2", "S-2"), flight("F-3", "S-1")],
    )

    def blocked() -> bool:
        rows = cli.ok("events")
        return bool(sum(r["status"] == "action_required" for r in rows) == len(refs))

    wait_for("the flights to need action", blocked, worker)

    page.goto(url + "/settings")
    unmapped = page.locator("#unmapped")
    expect(unmapped.locator('tr[data-key="student:S-1"]')).to_contain_text("Student S-1")
    expect(unmapped.locator('tr[data-key="student:S-1"] td.num')).to_have_text("2")
    expect(unmapped.locator('tr[data-key="charge:aircraft_rental"] td.num')).to_have_text("3")
    for key, label in (
        ("charge:aircraft_rental", "Aircraft rental"),
        ("charge:instructor_dual", "Instructor dual"),
        ("student:S-1", "Ana Ortiz"),
        ("student:S-2", "Ben Carter"),
    ):
        row = page.locator(f'#unmapped tr[data-key="{key}"]')
        row.locator("select").select_option(label=label)
        row.get_by_role("button", name="Map").click()
        expect(page.locator("#flash")).to_contain_text("mapped to QuickBooks")
    expect(page.locator("#unmapped")).to_have_count(0)
    expect(page.locator("#student-mappings")).to_contain_text("Ana Ortiz")
    expect(page.locator("#settings-history")).to_contain_text("Student S-2 → Ben Carter")

    # the dashboard's Action Required group, then Retry Failed
    page.goto(url + "/")
    group = page.locator('article.group[data-reason="missing_mapping"]')
    expect(group).to_contain_text("3 events")
    group.get_by_role("button", name="Retry Failed").click()
    expect(page.locator("#flash")).to_contain_text("3 requeued")

    def synced() -> bool:
        rows = cli.ok("events")
        return bool(sum(r["status"] == "synced" for r in rows) == len(refs))

    wait_for("the retried flights to sync", synced, worker)
    page.goto(url + "/")
    for ref in sorted(refs):
        row = page.locator(f'#events-table tr[data-ref="{ref}"]')
        expect(row.locator(".status")).to_have_text("In QuickBooks")
        expect(row.locator(".status")).to_have_attribute("title", "synced")
        expect(row).to_contain_text("FL-" + ref)  # the DocNumber, once QuickBooks holds it

    # a new student is invoiced with no manual mapping once auto-customers is on
    page.goto(url + "/settings")
    page.get_by_role("button", name="Create customers for new students by themselves").click()
    expect(page.locator("#auto-customers-state")).to_have_text("On")
    record_via_cli(cli, tmp_path / "new.jsonl", [flight("F-4", "S-9")])
    refs.add("F-4")
    wait_for("the new student's flight to sync", synced, worker)
    page.goto(url + "/settings")
    expect(page.locator("#student-mappings")).to_contain_text("S-9")
    expect(page.locator("#settings-history")).to_contain_text(
        "Student S-9 → Student S-9 (created in QuickBooks, by itself)"
    )
    assert_one_invoice_each(sim.invoices(), {f"FL-{r}" for r in refs})
    assert worker.poll() is None, "the same worker did it all"
