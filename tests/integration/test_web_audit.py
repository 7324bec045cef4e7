"""Auditors in the browser: one school's `audit export` download and the tamper check's verdict,
wired as `serve` wires them (workers.commands.audit / verify_audit_chain), on both backends."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from adapters.views import open_view
from adapters.web.app import create_app
from adapters.web.auth import local_operator
from domain.ports import FixedClock
from domain.records import parse_flight_ended
from tests.factories import flight
from tests.integration.test_audit import _tamper
from workers.bootstrap import open_ledger
from workers.commands.audit import school_export
from workers.commands.serve import _verdict
from workers.projector import Projector


@pytest.fixture
def audit_client(db_url: str, clock: FixedClock) -> Iterator[tuple[TestClient, str]]:
    """The dashboard of school alpha with beta's flights in the same log."""
    ledger = open_ledger(db_url, clock=clock)
    view = open_view(db_url)
    ledger.record("alpha", parse_flight_ended(flight("F-1")))
    clock.advance(2 * 86400)
    ledger.record("alpha", parse_flight_ended(flight("F-2")))
    ledger.record("beta", parse_flight_ended(flight("F-9")))
    projector = Projector(ledger, view)
    projector.catch_up()
    app = create_app(
        ledger=ledger,
        view=view,
        refresh_view=projector.catch_up,
        session_key=os.urandom(32),
        local_user=local_operator("alpha"),
        audit_export=lambda school, since, until, fmt: school_export(
            ledger, school, since, until, fmt
        ),
        audit_verify=lambda: _verdict(ledger, view),
    )
    try:
        with TestClient(app, follow_redirects=True) as client:
            yield client, db_url
    finally:
        view.close()
        ledger.close()


def test_export_download_is_one_school_and_a_date_range(
    audit_client: tuple[TestClient, str],
) -> None:
    """JSONL and CSV downloads hold only this school's facts, bounded by the dates given."""
    client, _ = audit_client
    page = client.get("/audit")
    assert page.status_code == 200 and 'id="download"' in page.text
    jsonl = client.get("/audit/export", params={"format": "jsonl"})
    assert jsonl.headers["content-disposition"].startswith("attachment;")
    entries = [json.loads(line) for line in jsonl.text.splitlines()]
    assert {e["school"] for e in entries} == {"alpha"}
    assert {e["data"]["reference"] for e in entries if "reference" in e["data"]} == {"F-1", "F-2"}
    ranged = client.get(
        "/audit/export", params={"format": "csv", "since": "2026-11-22", "until": "2026-11-22"}
    )
    rows = list(csv.DictReader(io.StringIO(ranged.text)))
    assert [json.loads(r["data"]).get("reference") for r in rows] == ["F-2"]
    bad = client.get("/audit/export", params={"format": "xml"})
    assert bad.status_code == 400 and "unknown format &#39;xml&#39;" in bad.text


def test_tamper_check_verdict_in_the_page(audit_client: tuple[TestClient, str]) -> None:
    """The tamper check says the log is intact, and names the change once a row is forged."""
    client, db_url = audit_client
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/audit").text)
    assert found is not None
    page = client.post("/audit/verify", data={"csrf": found.group(1)})
    assert "The log is intact: 3 events checked against the audit hash chain." in page.text
    _tamper(db_url, 2)
    page = client.post("/audit/verify", data={"csrf": found.group(1)})
    assert 'id="verdict">The log was changed' in page.text
