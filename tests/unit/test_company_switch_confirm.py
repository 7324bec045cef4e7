"""The dashboard's company-switch confirmation serves one callback, for the confirmed realm only."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from adapters.web.connection import confirm_switch, switch_page_context, take_switch
from domain.connection import CompanySwitch, HeldRecord


def _request() -> Any:
    return SimpleNamespace(state=SimpleNamespace(session={}, session_dirty=False))


def test_a_confirmation_switches_only_to_the_confirmed_realm_and_only_once() -> None:
    """Confirmed for B: a callback for C does not switch (and uses the confirmation up); a
    callback for B does, once."""
    request = _request()
    confirm_switch(request, "B", "Other Aviation LLC")
    assert take_switch(request, "C") is None
    assert take_switch(request, "B") is None, "a confirmation serves one callback"
    confirm_switch(request, "B", "Other Aviation LLC")
    assert take_switch(request, "B") == {"realm": "B", "company": "Other Aviation LLC"}
    assert take_switch(request, "B") is None
    assert request.state.session_dirty


def test_the_confirm_page_says_the_issue_sentence_and_counts_every_held_record() -> None:
    """ "This school's invoices are in A; you connected B." and the held records (50 listed)."""
    held = tuple(HeldRecord(f"F-{i}", "uncertain") for i in range(60))
    page = switch_page_context(CompanySwitch("Sunrise", "1", "Other", "2", held))
    assert page["refusal"] == "This school's invoices are in Sunrise; you connected Other."
    assert (page["held_count"], len(page["held"])) == (60, 50)
