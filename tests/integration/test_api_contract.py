"""The HTTP API against API.md, route by route and status by status, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.api.limits import RateLimiter
from domain.application import FlightLedger
from domain.ports import FixedClock
from domain.qbo_lists import ITEM, QboLists, QboObject
from services.push_pass import SyncEngine
from tests.api_support import api_app, bearer, new_key
from tests.factories import flight, invoice_request, jsonl, payment
from tests.fakes import FakeAccountingGateway, FakeFinancialEventView, connect, map_everything
from tests.helpers_qbo import Cli
from workers.bootstrap import open_ledger
from workers.cli import app as cli_app

ALL_PERMISSIONS = ["*", "records:write"]


@dataclass
class Api:
    """A client of serve's app plus keys of school alpha (and one of school beta)."""

    client: TestClient
    ledger: FlightLedger
    db_url: str
    writer: dict[str, str]  # records:write
    viewer: dict[str, str]  # billing:view
    admin: dict[str, str]  # everything
    beta: dict[str, str]  # everything, school beta

    def post_flight(self, record: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        """POST /api/v1/flights."""
        return self.client.post("/api/v1/flights", json=record, headers=headers or self.writer)


@pytest.fixture
def ledger(db_url: str, clock: FixedClock) -> Iterator[FlightLedger]:
    """The log on SQLite or PostgreSQL."""
    app = open_ledger(db_url, clock=clock)
    yield app
    app.close()


@pytest.fixture
def api(ledger: FlightLedger, db_url: str) -> Iterator[Api]:
    """serve's app with a checklist provider and keys of two schools."""
    app, view = api_app(
        ledger,
        db_url,
        checklist=lambda school: [{"item": "Connect QuickBooks", "ok": False, "fix": "connect"}],
    )
    with TestClient(app, follow_redirects=False) as client:
        yield Api(
            client=client,
            ledger=ledger,
            db_url=db_url,
            writer=bearer(new_key(ledger, "alpha", ["records:write"], "scheduler")),
            viewer=bearer(new_key(ledger, "alpha", ["billing:view"], "reader")),
            admin=bearer(new_key(ledger, "alpha", ALL_PERMISSIONS, "office")),
            beta=bearer(new_key(ledger, "beta", ALL_PERMISSIONS, "beta-office")),
        )
    view.close()


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The error envelope of a response that must have this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"} and {"code", "message", "fields"} <= set(body["error"])
    error: dict[str, Any] = body["error"]
    return error


# --- records -----------------------------------------------------------------------------------


def test_flight_is_recorded_once_duplicate_is_200_and_changed_contents_409(api: Api) -> None:
    """201 new; 200 + duplicate for the identical record; 409 for the same id, other contents."""
    first = api.post_flight(flight("F-1"))
    assert first.status_code == 201, first.text
    assert first.json()["duplicate"] is False and first.json()["reference"] == "F-1"
    again = api.post_flight(flight("F-1"))
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert again.json()["id"] == first.json()["id"]
    changed = flight("F-1")
    changed["charges"][0]["rate"] = "170.00"
    error = error_of(api.post_flight(changed), 409)
    assert error["fields"][0]["field"] == "flight_id"
    assert [e.type for e in api.ledger.history("alpha", "F-1")] == ["FlightEnded"]
    assert api.ledger.history("alpha", "F-1")[0].actor == "scheduler"


def test_invoice_request_and_payment_routes_record(api: Api) -> None:
    """POST invoice-requests and payments answer 201 with the record's reference."""
    answer = api.client.post(
        "/api/v1/invoice-requests", json=invoice_request("R-1"), headers=api.writer
    )
    assert (answer.status_code, answer.json()["reference"]) == (201, "R-1")
    answer = api.client.post("/api/v1/payments", json=payment("P-1"), headers=api.writer)
    assert (answer.status_code, answer.json()["reference"]) == (201, "P-1")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r["hobbs"].update(end="1000.0"), "hobbs.end"),
        (lambda r: r["charges"][0].update(rate="1.234"), "charges[0].rate"),
        (lambda r: r.update(flight_id=""), "flight_id"),
        (lambda r: r.update(colour="red"), "colour"),
    ],
)
def test_422_names_the_field_with_the_cli_reason(api: Api, change: Any, field: str) -> None:
    """A bad record is a 422 naming the field, in the same words as `record flight-ended`."""
    record = flight("F-9")
    change(record)
    error = error_of(api.post_flight(record), 422)
    (bad,) = error["fields"]
    cli = Cli({"FLIGHTLEDGER_DB": api.db_url})
    cli_answer = cli.runner.invoke(
        cli_app,
        ["--json", "--school", "alpha", "record", "flight-ended", "-"],
        input=jsonl([record]),
        env={"FLIGHTLEDGER_DB": api.db_url},
    )
    (cli_rejected,) = json.loads(cli_answer.stdout)["rejected"]
    assert bad == {"field": field, "reason": cli_rejected["reason"]}
    assert cli_rejected["field"] == field
    assert api.client.get("/api/v1/events", headers=api.admin).json()["items"] == []


def test_malformed_json_is_400_and_too_large_body_413(ledger: FlightLedger, db_url: str) -> None:
    """Malformed JSON is 400; a body over the limit is 413 — both as the error envelope."""
    app, view = api_app(ledger, db_url, body_limit=2000)
    headers = bearer(new_key(ledger, "alpha", ["records:write"]))
    with TestClient(app) as client:
        error_of(client.post("/api/v1/flights", content=b'{"flight_id": ', headers=headers), 400)
        big = {"kind": "flight-ended", "records": [flight(f"F-{i}") for i in range(20)]}
        error_of(client.post("/api/v1/records", json=big, headers=headers), 413)
    view.close()


def test_batch_records_counts_duplicates_and_rejects_by_index(api: Api) -> None:
    """POST /records: valid ones recorded, duplicates counted, bad ones rejected by index."""
    bad = flight("F-3")
    bad["currency"] = "usd"
    body = {"kind": "flight-ended", "records": [flight("F-1"), flight("F-2"), bad, flight("F-1")]}
    answer = api.client.post("/api/v1/records", json=body, headers=api.writer)
    assert answer.status_code == 200, answer.text
    assert answer.json()["recorded"] == 2 and answer.json()["duplicates"] == 1
    assert [(r["index"], r["field"]) for r in answer.json()["rejected"]] == [(2, "currency")]
    too_many = {"kind": "flight-ended", "records": [{}] * 1001}
    assert (
        error_of(api.client.post("/api/v1/records", json=too_many, headers=api.writer), 422)[
            "fields"
        ][0]["field"]
        == "records"
    )


# --- authentication, permissions, tenancy, rate --------------------------------------------------


def test_401_without_key_unknown_key_and_revoked_key_at_once(api: Api) -> None:
    """No key, a made-up key and a key revoked a moment ago are all 401."""
    error_of(api.client.get("/api/v1/events"), 401)
    error_of(api.client.get("/api/v1/events", headers=bearer("flk.alpha.0123456789ab.x")), 401)
    key, text = api.ledger.create_api_key(
        "alpha", name="temp", permissions=["billing:view"], operator="t"
    )
    assert api.client.get("/api/v1/events", headers=bearer(text)).status_code == 200
    api.ledger.revoke_api_key("alpha", key.id, operator="t")
    error_of(api.client.get("/api/v1/events", headers=bearer(text)), 401)


def test_403_when_the_key_lacks_the_permission(api: Api) -> None:
    """A records:write key cannot read; a view key cannot record, retry or set mappings."""
    assert (
        "billing:view"
        in error_of(api.client.get("/api/v1/events", headers=api.writer), 403)["message"]
    )
    error_of(api.post_flight(flight("F-1"), headers=api.viewer), 403)
    error_of(api.client.post("/api/v1/retry-failed", json={}, headers=api.viewer), 403)
    error_of(
        api.client.put("/api/v1/mappings/charge/x", json={"qbo_id": "1"}, headers=api.viewer), 403
    )


def test_another_schools_things_are_404(api: Api) -> None:
    """School beta's key sees none of alpha's events: 404 exactly as if they did not exist."""
    api.post_flight(flight("F-1"))
    alpha_id = api.client.get("/api/v1/events/F-1", headers=api.admin).json()["id"]
    for path in (f"/api/v1/events/{alpha_id}", "/api/v1/events/F-1", "/api/v1/events/F-1/history"):
        error_of(api.client.get(path, headers=api.beta), 404)
    for path in ("/api/v1/events/F-404", "/api/v1/events/F-404/history"):
        error_of(api.client.get(path, headers=api.admin), 404)
    error_of(
        api.client.post("/api/v1/events/F-1/dismiss", json={"note": "x"}, headers=api.beta), 404
    )
    error_of(api.client.post("/api/v1/retry-failed", json={"ids": ["F-1"]}, headers=api.beta), 404)
    assert api.client.get("/api/v1/events", headers=api.beta).json()["items"] == []


def test_429_with_retry_after_per_key(ledger: FlightLedger, db_url: str) -> None:
    """Past its budget a key gets 429 with Retry-After; another key is not affected."""
    clock = [0.0]
    app, view = api_app(
        ledger, db_url, rate=RateLimiter(per_minute=60, burst=2, monotonic=lambda: clock[0])
    )
    busy = bearer(new_key(ledger, "alpha", ["billing:view"], "busy"))
    calm = bearer(new_key(ledger, "alpha", ["billing:view"], "calm"))
    with TestClient(app) as client:
        assert [client.get("/api/v1/events", headers=busy).status_code for _ in range(2)] == [
            200,
            200,
        ]
        refused = client.get("/api/v1/events", headers=busy)
        error_of(refused, 429)
        assert refused.headers["Retry-After"] == "1"
        assert client.get("/api/v1/events", headers=calm).status_code == 200
        clock[0] += 1.0
        assert client.get("/api/v1/events", headers=busy).status_code == 200
    view.close()


# --- reading -------------------------------------------------------------------------------------


def test_events_newest_first_paged_by_cursor_and_filtered(api: Api) -> None:
    """GET /events pages newest first with next_cursor; status/reason filter; bad filter 422."""
    body = {"kind": "flight-ended", "records": [flight(f"F-{i}") for i in range(1, 6)]}
    api.client.post("/api/v1/records", json=body, headers=api.writer)
    api.post_flight(flight("F-6"))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/api/v1/events", params=params, headers=api.viewer).json()
        seen += [row["reference"] for row in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[0] == "F-6" and sorted(seen) == sorted(f"F-{i}" for i in range(1, 7))
    assert len(seen) == 6
    pending = api.client.get("/api/v1/events?status=pending", headers=api.viewer).json()
    assert len(pending["items"]) == 6
    assert api.client.get("/api/v1/events?status=synced", headers=api.viewer).json()["items"] == []
    assert (
        error_of(api.client.get("/api/v1/events?status=nope", headers=api.viewer), 422)["fields"][
            0
        ]["field"]
        == "status"
    )
    error_of(api.client.get("/api/v1/events?cursor=abc", headers=api.viewer), 422)
    error_of(api.client.get("/api/v1/events?limit=0", headers=api.viewer), 422)


def test_event_row_history_action_required_and_checklist(api: Api) -> None:
    """One row as `events`, its history with log positions, the groups and the checklist."""
    api.post_flight(flight("F-1"))
    row = api.client.get("/api/v1/events/F-1", headers=api.viewer).json()
    assert {"id", "kind", "reference", "status", "reason_code", "reason", "attempts"} <= set(row)
    assert {"qbo_id", "doc_number", "amount", "updated_at"} <= set(row)
    (entry,) = api.client.get("/api/v1/events/F-1/history", headers=api.viewer).json()
    assert set(entry) == {"position", "log_position", "at", "type", "actor", "data"}
    assert (entry["type"], entry["actor"]) == ("FlightEnded", "scheduler")
    assert api.client.get("/api/v1/action-required", headers=api.viewer).json() == []
    checklist = api.client.get("/api/v1/checklist", headers=api.viewer).json()
    assert checklist[0]["item"] == "Connect QuickBooks"


# --- acting --------------------------------------------------------------------------------------


def test_retry_failed_409_when_all_blocked_then_requeues(api: Api) -> None:
    """Retry of a still-unmapped group is 409 naming the cause; once mapped it requeues."""
    connect(api.ledger, "alpha")
    map_everything(api.ledger, "alpha")
    api.post_flight(flight("F-77", student="S-unmapped"))
    SyncEngine(
        api.ledger, FakeFinancialEventView(api.ledger), lambda s: FakeAccountingGateway()
    ).run_pass("alpha")
    groups = api.client.get("/api/v1/action-required", headers=api.viewer).json()
    assert [(g["reason_code"], g["count"], g["example"]) for g in groups] == [
        ("missing_mapping", 1, "F-77")
    ]
    assert "S-unmapped" in groups[0]["fix"]
    blocked = api.client.post(
        "/api/v1/retry-failed", json={"reason": "missing_mapping"}, headers=api.admin
    )
    error = error_of(blocked, 409)
    assert error["fields"][0]["field"] == "missing_mapping"
    assert "student:S-unmapped" in error["message"]
    api.ledger.map_student("alpha", "S-unmapped", "5", operator="t")
    done = api.client.post(
        "/api/v1/retry-failed", json={"reason": "missing_mapping"}, headers=api.admin
    )
    assert done.status_code == 200 and done.json()["requeued"] >= 1
    assert api.ledger.history("alpha", "F-77")[-1].actor == "office"
    error_of(api.client.post("/api/v1/retry-failed", json={"reason": "x"}, headers=api.admin), 422)


def test_dismiss_records_the_key_and_refuses_a_synced_event(api: Api) -> None:
    """Dismiss needs a note and records the key's name; a synced event cannot be: 409."""
    api.post_flight(flight("F-1"))
    error_of(api.client.post("/api/v1/events/F-1/dismiss", json={}, headers=api.admin), 422)
    ok = api.client.post(
        "/api/v1/events/F-1/dismiss", json={"note": "duplicate booking"}, headers=api.admin
    )
    assert ok.json() == {"ok": True}
    entry = api.ledger.history("alpha", "F-1")[-1]
    assert (entry.type, entry.actor) == ("Dismissed", "office")
    connect(api.ledger, "alpha")
    map_everything(api.ledger, "alpha")
    api.post_flight(flight("F-2"))
    SyncEngine(
        api.ledger, FakeFinancialEventView(api.ledger), lambda s: FakeAccountingGateway()
    ).run_pass("alpha")
    refused = api.client.post(
        "/api/v1/events/F-2/dismiss", json={"note": "late"}, headers=api.admin
    )
    assert "already in QuickBooks" in error_of(refused, 409)["message"]


def test_connection_mappings_and_defaults(api: Api) -> None:
    """Connection status as the CLI; mappings set and listed; defaults set; test needs QBO."""
    status = api.client.get("/api/v1/connection", headers=api.viewer).json()
    assert status["pill"] == "Not connected" or "pill" in status
    connect(api.ledger, "alpha")
    assert api.client.get("/api/v1/connection", headers=api.viewer).json()["company"] == (
        "Sunrise Flight School"
    )
    error_of(api.client.post("/api/v1/connection/test", headers=api.viewer), 503)
    for path, body in (
        ("/api/v1/mappings/charge/aircraft_rental", {"qbo_id": "1"}),
        ("/api/v1/mappings/student/S-7", {"qbo_id": "3"}),
        ("/api/v1/mappings/payment_type/card", {"qbo_id": "36", "active": False}),
    ):
        assert api.client.put(path, json=body, headers=api.admin).json() == {"ok": True}
    rows = api.client.get("/api/v1/mappings?include_inactive=true", headers=api.viewer).json()
    assert {(r["kind"], r["key"], r["qbo_id"], r["active"]) for r in rows} == {
        ("charge", "aircraft_rental", "1", True),
        ("student", "S-7", "3", True),
        ("payment_type", "card", "36", False),
    }
    error_of(
        api.client.put("/api/v1/mappings/colour/x", json={"qbo_id": "1"}, headers=api.admin), 422
    )
    error_of(api.client.put("/api/v1/defaults", json={}, headers=api.admin), 422)
    assert api.client.put(
        "/api/v1/defaults", json={"term": "3", "memo": "Thanks"}, headers=api.admin
    ).json() == {"ok": True}
    assert api.ledger.mappings("alpha").term_id == "3"
    assert api.ledger.history("alpha", "mappings")[-1].actor == "office"


# --- operations ----------------------------------------------------------------------------------


def test_health_ready_unknown_route_and_openapi(api: Api) -> None:
    """healthz/readyz answer ok; an unknown API route is a JSON 404; OpenAPI lists API.md."""
    assert api.client.get("/healthz").json() == {"ok": True}
    assert api.client.get("/readyz").json()["ok"] is True
    error_of(api.client.get("/api/v1/nothing-here", headers=api.admin), 404)
    paths = set(api.client.get("/openapi.json").json()["paths"])
    assert {
        "/api/v1/flights",
        "/api/v1/invoice-requests",
        "/api/v1/payments",
        "/api/v1/records",
        "/api/v1/events",
        "/api/v1/events/{ref}",
        "/api/v1/events/{ref}/history",
        "/api/v1/action-required",
        "/api/v1/retry-failed",
        "/api/v1/events/{ref}/dismiss",
        "/api/v1/connection",
        "/api/v1/connection/test",
        "/api/v1/mappings",
        "/api/v1/mappings/{kind}/{key}",
        "/api/v1/defaults",
        "/api/v1/checklist",
        "/healthz",
        "/readyz",
    } <= paths
    assert not any(p.startswith(("/login", "/connect")) for p in paths)
    assert "swagger" in api.client.get("/docs").text.lower()
    assert api.client.get("/").status_code == 200  # the dashboard still serves beside it


@dataclass
class CachedLists:
    """QuickBooks' cached lists of school alpha: item 1 active, item 5 inactive."""

    lists: QboLists

    def cached(self, school: str) -> QboLists | None:
        """The stored lists."""
        return self.lists if school == self.lists.school else None

    def refresh(self, school: str) -> QboLists:
        """Not used by the API."""
        raise AssertionError("the API never reads QuickBooks' lists itself")


def test_mapped_ids_are_checked_against_cached_quickbooks_lists(
    ledger: FlightLedger, db_url: str
) -> None:
    """Like the CLI: an id QuickBooks lacks is refused; an inactive one unless allowed."""
    items = {
        "1": QboObject(ITEM, "1", "Aircraft rental", True),
        "5": QboObject(ITEM, "5", "Old rental", False),
    }
    lists = QboLists("alpha", "9130350000000001", ledger.clock.now(), {ITEM: items})
    app, view = api_app(ledger, db_url, qbo_lists=CachedLists(lists))
    admin = bearer(new_key(ledger, "alpha", ["billing:admin"]))
    path = "/api/v1/mappings/charge/aircraft_rental"
    with TestClient(app) as client:
        missing = error_of(client.put(path, json={"qbo_id": "99"}, headers=admin), 422)
        assert missing["fields"][0]["field"] == "qbo_id" and "99" in missing["message"]
        error_of(client.put(path, json={"qbo_id": "5"}, headers=admin), 422)
        allowed = client.put(path, json={"qbo_id": "5", "allow_inactive": True}, headers=admin)
        assert allowed.json() == {"ok": True}
        assert client.put(path, json={"qbo_id": "1"}, headers=admin).json() == {"ok": True}
    view.close()
    assert ledger.mappings("alpha").charges["aircraft_rental"] == "1"


def test_a_browser_tool_on_another_origin_may_post_with_a_key(api: Api) -> None:
    """Bearer keys are no ambient credential: the dashboard's Origin check does not refuse them,
    while a cookie-carrying cross-site POST to the API is refused with the JSON envelope."""
    origin = {"Origin": "https://scheduler.example", **api.writer}
    assert api.post_flight(flight("F-1"), headers=origin).status_code == 201
    api.client.cookies.set("flightledger_session", "x")
    error_of(api.post_flight(flight("F-2"), headers=origin), 403)
    api.client.cookies.clear()
    error_of(api.client.get("/api/v1/events", headers={"Host": "evil.example"}), 400)
