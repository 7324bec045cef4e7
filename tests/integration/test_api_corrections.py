"""The API correction routes (amendments, cancellation, refunds, /records kinds), both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.application import FlightLedger
from domain.records import RecordError, RecordKind, parse_correction_line
from tests.api_support import api_app, bearer, new_key
from tests.factories import amendment, cancellation, flight, payment, refund
from tests.integration.test_api_contract import error_of


class Api:
    """A client of serve's app with a writer, a viewer and a key of school beta."""

    def __init__(self, client: TestClient, ledger: FlightLedger) -> None:
        self.client = client
        self.ledger = ledger
        self.writer = bearer(new_key(ledger, "alpha", ["records:write"], "scheduler"))
        self.viewer = bearer(new_key(ledger, "alpha", ["billing:view"], "reader"))
        self.beta = bearer(new_key(ledger, "beta", ["*", "records:write"], "beta-office"))

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        """POST a JSON body to /api/v1/PATH as the writer (or the given key)."""
        return self.client.post(f"/api/v1{path}", json=body, headers=headers or self.writer)


@pytest.fixture
def api(ledger: FlightLedger, db_url: str) -> Iterator[Api]:
    """serve's app on the test's database, flight F-1 and payment P-1 of school alpha recorded."""
    app, view = api_app(ledger, db_url)
    with TestClient(app, follow_redirects=False) as client:
        api = Api(client, ledger)
        assert api.post("/flights", flight("F-1")).status_code == 201
        assert api.post("/payments", payment("P-1")).status_code == 201
        yield api
    view.close()


def cli_reason(kind: RecordKind, record: dict[str, Any]) -> tuple[str, str]:
    """The field and reason the CLI's parser gives for this record."""
    with pytest.raises(RecordError) as refused:
        parse_correction_line(kind, json.dumps(record))
    return refused.value.field, refused.value.reason


def test_amendment_route_records_once_and_the_row_shows_the_new_amount(api: Api) -> None:
    """201 + FlightAmended by the key's name; the same again is 200 duplicate; the row's amount."""
    body = amendment("F-1", hours="1.0")
    del body["flight_id"]  # taken from the path
    first = api.post("/flights/F-1/amendments", body)
    assert first.status_code == 201, first.text
    assert first.json()["reference"] == "F-1" and first.json()["duplicate"] is False
    again = api.post("/flights/F-1/amendments", amendment("F-1", hours="1.0"))
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert again.json()["id"] == first.json()["id"]
    history = api.ledger.history("alpha", "F-1")
    assert [e.type for e in history] == ["FlightEnded", "FlightAmended"]
    assert history[-1].actor == "scheduler"
    row = api.client.get("/api/v1/events/F-1", headers=api.viewer).json()
    assert row["amount"] == "225.00" and row["corrections_pending"] == []


def test_amendment_refusals_name_the_field_with_the_clis_reason(api: Api) -> None:
    """Bad field -> 422 as the CLI; path/body flight_id mismatch -> 422 flight_id."""
    bad = amendment("F-1")
    bad["charges"][0]["rate"] = "1.234"
    error = error_of(api.post("/flights/F-1/amendments", bad), 422)
    field, reason = cli_reason(RecordKind.FLIGHT_AMENDED, bad)
    assert error["fields"] == [{"field": field, "reason": reason}]
    assert field == "charges[0].rate"
    error = error_of(api.post("/flights/F-1/amendments", amendment("F-2")), 422)
    assert error["fields"][0]["field"] == "flight_id"
    assert [e.type for e in api.ledger.history("alpha", "F-1")] == ["FlightEnded"]


def test_unknown_flight_and_other_schools_flight_are_the_same_404(api: Api) -> None:
    """Amending or cancelling an unrecorded flight, or another school's, is 404 on flight_id."""
    assert api.post("/flights", flight("F-B"), headers=api.beta).status_code == 201
    unknown = error_of(api.post("/flights/F-9/amendments", amendment("F-9")), 404)
    assert unknown["fields"] == [
        {"field": "flight_id", "reason": "no flight 'F-9' has been recorded"}
    ]
    other = error_of(api.post("/flights/F-B/cancellation", cancellation("F-B")), 404)
    assert other["fields"] == [
        {"field": "flight_id", "reason": "no flight 'F-B' has been recorded"}
    ]
    assert [e.type for e in api.ledger.history("beta", "F-B")] == ["FlightEnded"]


def test_cancellation_route_cancels_once_then_amendments_are_refused(api: Api) -> None:
    """201 status cancelled; again 200 duplicate; an amendment afterwards is 422 on flight_id."""
    body = {"cancelled_at": "2026-11-21T09:00:00Z", "reason": "Weather"}
    first = api.post("/flights/F-1/cancellation", body)
    assert (first.status_code, first.json()["status"]) == (201, "cancelled"), first.text
    again = api.post("/flights/F-1/cancellation", body)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    error = error_of(api.post("/flights/F-1/amendments", amendment("F-1")), 422)
    assert error["fields"][0]["field"] == "flight_id"
    types = [e.type for e in api.ledger.history("alpha", "F-1")]
    assert types == ["FlightEnded", "FlightCancelled"]


def test_refund_route_duplicate_conflict_overdraw_and_unknown_payment(api: Api) -> None:
    """201 refund event; same again 200; same id other amount 409; over the payment 422; 404."""
    first = api.post("/refunds", refund("RF-1", "P-1", "50.00"))
    assert first.status_code == 201, first.text
    assert first.json()["reference"] == "RF-1"
    again = api.post("/refunds", refund("RF-1", "P-1", "50.00"))
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    conflict = error_of(api.post("/refunds", refund("RF-1", "P-1", "60.00")), 409)
    assert conflict["fields"][0]["field"] == "refund_id"
    over = error_of(api.post("/refunds", refund("RF-2", "P-1", "250.00")), 422)
    assert over["fields"][0]["field"] == "amount"
    assert "would total" in over["fields"][0]["reason"]
    unknown = error_of(api.post("/refunds", refund("RF-3", "P-9")), 404)
    assert unknown["fields"] == [
        {"field": "payment_id", "reason": "no payment 'P-9' has been recorded"}
    ]
    refunds = [e for e in api.ledger.history("alpha", "P-1") if e.type == "RefundRecorded"]
    assert len(refunds) == 1


def test_records_batch_takes_the_correction_kinds(api: Api) -> None:
    """kind flight-amended/flight-cancelled/payment-refunded: recorded, duplicates, rejected."""
    assert api.post("/flights", flight("F-2")).status_code == 201
    bad = amendment("F-2")
    bad["hobbs"]["end"] = "1000.0"
    answer = api.post(
        "/records",
        {
            "kind": "flight-amended",
            "records": [amendment("F-1"), amendment("F-1"), bad, amendment("F-9")],
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "recorded": 1,
        "duplicates": 1,
        "rejected": [
            {
                "index": 2,
                "field": "hobbs.end",
                "reason": cli_reason(RecordKind.FLIGHT_AMENDED, bad)[1],
            },
            {"index": 3, "field": "flight_id", "reason": "no flight 'F-9' has been recorded"},
        ],
    }
    answer = api.post("/records", {"kind": "flight-cancelled", "records": [cancellation("F-2")]})
    assert answer.json() == {"recorded": 1, "duplicates": 0, "rejected": []}
    answer = api.post("/records", {"kind": "payment-refunded", "records": [refund("RF-1")]})
    assert answer.json() == {"recorded": 1, "duplicates": 0, "rejected": []}
    assert api.client.get("/api/v1/events/RF-1", headers=api.viewer).json()["kind"] == (
        "payment-refunded"
    )


def test_correction_routes_need_records_write(api: Api) -> None:
    """No key 401; a billing:view key 403; nothing appended."""
    assert api.client.post("/api/v1/refunds", json=refund()).status_code == 401
    error_of(api.post("/refunds", refund(), headers=api.viewer), 403)
    error_of(api.post("/flights/F-1/amendments", amendment("F-1"), headers=api.viewer), 403)
    error_of(api.post("/flights/F-1/cancellation", cancellation("F-1"), headers=api.viewer), 403)
    assert [e.type for e in api.ledger.history("alpha", "F-1")] == ["FlightEnded"]


def test_openapi_documents_the_correction_routes_with_examples(api: Api) -> None:
    """The three routes are in /openapi.json with a request schema and an example each."""
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/flights/{flight_id}/amendments",
        "/api/v1/flights/{flight_id}/cancellation",
        "/api/v1/refunds",
    ):
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["example"] and schema["additionalProperties"] is False
    batch = paths["/api/v1/records"]["post"]["requestBody"]["content"]["application/json"]
    assert "payment-refunded" in batch["schema"]["properties"]["kind"]["enum"]
