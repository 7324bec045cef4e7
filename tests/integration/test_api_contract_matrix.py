"""Every route of API.md, status by status (401, 403, 404 as another school's, 409, 422, 429),
from one table, on SQLite and PostgreSQL. test_api_contract.py tells each route's own story;
this file makes sure no route of the contract is missed and none answers otherwise."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.api.limits import RateLimiter
from adapters.persistence import parse_database_url
from adapters.vault import TokenVault
from domain.application import FlightLedger
from domain.financial_event import NotFound
from tests.api_support import api_app, bearer, new_key
from tests.factories import flight, invoice_request, payment
from tests.helpers_qbo import new_secret_key
from workers.qbo import open_vault

VIEW, RETRY, ADMIN, WRITE = "billing:view", "billing:retry", "billing:admin", "records:write"
PERMISSIONS = (VIEW, RETRY, ADMIN, WRITE)
HOOK = "{hook}"  # replaced by the id of alpha's webhook subscription


@dataclass(frozen=True)
class Route:
    """One route of API.md's table: method, a concrete path, a valid body, its permission."""

    method: str
    path: str
    permission: str
    body: Any = None

    def call(self, client: TestClient, headers: dict[str, str], hook: str = "") -> Any:
        """Send it with these headers."""
        path = self.path.replace(HOOK, hook)
        if self.body is None:
            return client.request(self.method, path, headers=headers)
        return client.request(self.method, path, json=self.body, headers=headers)


ROUTES = (
    Route("POST", "/api/v1/flights", WRITE, flight("F-9")),
    Route("POST", "/api/v1/invoice-requests", WRITE, invoice_request("R-9")),
    Route("POST", "/api/v1/payments", WRITE, payment("P-9")),
    Route("POST", "/api/v1/records", WRITE, {"kind": "flight-ended", "records": [flight("F-8")]}),
    Route("GET", "/api/v1/events", VIEW),
    Route("GET", "/api/v1/events/F-1", VIEW),
    Route("GET", "/api/v1/events/F-1/history", VIEW),
    Route("GET", "/api/v1/action-required", VIEW),
    Route("POST", "/api/v1/retry-failed", RETRY, {"ids": ["F-1"]}),
    Route("POST", "/api/v1/events/F-1/dismiss", RETRY, {"note": "booked twice"}),
    Route("GET", "/api/v1/connection", VIEW),
    Route("POST", "/api/v1/connection/test", VIEW),
    Route("GET", "/api/v1/mappings", VIEW),
    Route("PUT", "/api/v1/mappings/charge/aircraft_rental", ADMIN, {"qbo_id": "1"}),
    Route("PUT", "/api/v1/defaults", ADMIN, {"term": "3"}),
    Route("GET", "/api/v1/checklist", VIEW),
    Route(
        "POST",
        "/api/v1/webhooks",
        ADMIN,
        {"url": "http://127.0.0.1:9/hooks", "events": ["financial_event.synced"]},
    ),
    Route("GET", "/api/v1/webhooks", ADMIN),
    Route("GET", f"/api/v1/webhooks/{HOOK}/deliveries", ADMIN),
    Route("DELETE", f"/api/v1/webhooks/{HOOK}", ADMIN),
)

# what names one thing of one school: another school's key gets 404 as for nothing at all,
# (route with alpha's thing, the same route naming something that does not exist)
OWNED = (
    ("GET", "/api/v1/events/F-1", "/api/v1/events/F-404", None),
    ("GET", "/api/v1/events/F-1/history", "/api/v1/events/F-404/history", None),
    ("POST", "/api/v1/events/F-1/dismiss", "/api/v1/events/F-404/dismiss", {"note": "x"}),
    ("POST", "/api/v1/retry-failed", "/api/v1/retry-failed", {"ids": ["F-1"]}),
    ("GET", f"/api/v1/webhooks/{HOOK}/deliveries", "/api/v1/webhooks/wh_404/deliveries", None),
    ("DELETE", f"/api/v1/webhooks/{HOOK}", "/api/v1/webhooks/wh_404", None),
)

# a body each write route must refuse with 422 naming a field
INVALID: tuple[tuple[str, str, Any], ...] = (
    ("POST", "/api/v1/flights", {**flight("F-5"), "currency": "usd"}),
    ("POST", "/api/v1/invoice-requests", {**invoice_request("R-5"), "memo": 7}),
    ("POST", "/api/v1/payments", {**payment("P-5"), "amount": "-1.00"}),
    ("POST", "/api/v1/records", {"kind": "flight-landed", "records": []}),
    ("POST", "/api/v1/retry-failed", {"reason": "no_such_reason"}),
    ("POST", "/api/v1/events/F-1/dismiss", {}),
    ("PUT", "/api/v1/mappings/colour/red", {"qbo_id": "1"}),
    ("PUT", "/api/v1/defaults", {}),
    ("POST", "/api/v1/webhooks", {"url": "http://example.com/x", "events": ["x"]}),
    ("GET", "/api/v1/events?status=landed", None),
)


@dataclass
class Setup:
    """A client of serve's app; school alpha holds flight F-1 and a webhook subscription."""

    client: TestClient
    ledger: FlightLedger
    hook: str
    admin: dict[str, str]  # alpha, every permission
    beta: dict[str, str]  # school beta, every permission


@pytest.fixture
def vault(db_url: str) -> TokenVault:
    """The vault webhook secrets go to."""
    return open_vault(
        parse_database_url(db_url), {"FLIGHTLEDGER_SECRET_KEY": new_secret_key()}, True
    )


@pytest.fixture
def setup(ledger: FlightLedger, db_url: str, vault: TokenVault) -> Iterator[Setup]:
    """serve's app with school alpha's flight F-1 and webhook, and keys of alpha and beta."""
    app, view = api_app(
        ledger,
        db_url,
        webhook_secrets=vault,
        checklist=lambda school: [{"item": "Connect QuickBooks", "ok": False, "fix": "connect"}],
    )
    admin = bearer(new_key(ledger, "alpha", ["*", WRITE], "office"))
    with TestClient(app, follow_redirects=False) as client:
        assert client.post("/api/v1/flights", json=flight("F-1"), headers=admin).status_code == 201
        hook = client.post(
            "/api/v1/webhooks",
            json={"url": "http://127.0.0.1:9/hooks", "events": ["financial_event.synced"]},
            headers=admin,
        )
        assert hook.status_code == 201, hook.text
        beta = bearer(new_key(ledger, "beta", ["*", WRITE], "beta-office"))
        yield Setup(client, ledger, hook.json()["id"], admin, beta)
    view.close()


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The error envelope of a response that must have this status."""
    assert response.status_code == status, (response.request.url, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"} and {"code", "message", "fields"} <= set(body["error"])
    error: dict[str, Any] = body["error"]
    return error


def test_every_contract_route_is_in_the_openapi_document(setup: Setup) -> None:
    """Each route of API.md's table is served and documented with its errors."""
    paths = setup.client.get("/openapi.json").json()["paths"]
    for route in ROUTES:
        template = route.path.replace(HOOK, "{webhook_id}").replace("/F-1", "/{ref}")
        template = template.replace("/charge/aircraft_rental", "/{kind}/{key}")
        operation = paths[template][route.method.lower()]
        assert {"401", "403", "422", "429"} <= set(operation["responses"]), template
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert "get" in paths[probe]


def test_every_route_is_401_without_a_key_or_with_an_unknown_one(setup: Setup) -> None:
    """No key, another scheme and a made-up key: 401 with WWW-Authenticate on every route."""
    made_up = bearer("flk.alpha.0123456789ab.not-a-secret")
    for route in ROUTES:
        for headers in ({}, {"Authorization": "Basic b2ZmaWNlOng="}, made_up):
            answer = route.call(setup.client, headers, setup.hook)
            error_of(answer, 401)
            assert answer.headers["www-authenticate"] == "Bearer"


def test_every_route_is_403_without_its_permission_and_served_with_it(setup: Setup) -> None:
    """A key holding every permission but the route's one is 403 naming it; a key holding only
    that one gets past authorization (no 401/403, and never a 5xx)."""
    others = {
        needed: bearer(
            new_key(setup.ledger, "alpha", [p for p in PERMISSIONS if p != needed], f"no-{i}")
        )
        for i, needed in enumerate(PERMISSIONS)
    }
    only = {
        needed: bearer(new_key(setup.ledger, "alpha", [needed], f"only-{i}"))
        for i, needed in enumerate(PERMISSIONS)
    }
    for route in ROUTES:
        refused = error_of(route.call(setup.client, others[route.permission], setup.hook), 403)
        assert route.permission in refused["message"], (route.path, refused)
    for route in reversed(ROUTES):  # the DELETE first would leave the deliveries route a 404
        answer = route.call(setup.client, only[route.permission], setup.hook)
        documented = answer.status_code == 503 and route.path.endswith("/connection/test")
        assert answer.status_code not in (401, 403) and (answer.status_code < 500 or documented), (
            route.method,
            route.path,
            answer.status_code,
            answer.text[:300],
        )


def test_another_schools_things_are_404_exactly_as_if_they_did_not_exist(setup: Setup) -> None:
    """School beta's key, with every permission, on each route naming one of alpha's things:
    404 with the same code as for a thing that does not exist; alpha's thing is left as it was."""
    for method, owned, missing, body in OWNED:
        path = owned.replace(HOOK, setup.hook)
        theirs = error_of(setup.client.request(method, path, json=body, headers=setup.beta), 404)
        other = {"ids": ["F-404"]} if body is not None and "ids" in body else body
        nothing = error_of(
            setup.client.request(method, missing, json=other, headers=setup.beta), 404
        )
        said = json.dumps(theirs).replace(setup.hook, "<id>").replace("F-1", "<id>")
        assert said == json.dumps(nothing).replace("wh_404", "<id>").replace("F-404", "<id>")
        assert "alpha" not in said
    assert setup.client.get("/api/v1/events/F-1", headers=setup.admin).json()["status"] == (
        "pending"
    )
    hooks = setup.client.get("/api/v1/webhooks", headers=setup.admin).json()
    assert [h["id"] for h in hooks] == [setup.hook]
    assert setup.client.get("/api/v1/events", headers=setup.beta).json()["items"] == []
    assert setup.client.get("/api/v1/webhooks", headers=setup.beta).json() == []


@pytest.mark.parametrize(
    ("path", "record", "field", "change"),
    [
        ("/api/v1/flights", flight("F-2"), "flight_id", ("currency", "EUR")),
        ("/api/v1/invoice-requests", invoice_request("R-2"), "request_id", ("memo", "other")),
        ("/api/v1/payments", payment("P-2"), "payment_id", ("amount", "99.00")),
    ],
)
def test_each_record_route_is_200_for_a_duplicate_and_409_for_other_contents(
    setup: Setup, path: str, record: dict[str, Any], field: str, change: tuple[str, str]
) -> None:
    """201 new, 200 duplicate (nothing appended), 409 naming the id field for the same id with
    other contents (nothing appended either)."""
    first = setup.client.post(path, json=record, headers=setup.admin)
    assert first.status_code == 201, first.text
    again = setup.client.post(path, json=record, headers=setup.admin)
    assert (again.status_code, again.json()["duplicate"], again.json()["id"]) == (
        200,
        True,
        first.json()["id"],
    )
    changed = {**record, change[0]: change[1]}
    conflict = error_of(setup.client.post(path, json=changed, headers=setup.admin), 409)
    assert conflict["fields"][0]["field"] == field
    reference = first.json()["reference"]
    assert len(setup.ledger.history("alpha", reference)) == 1


def test_each_write_route_is_422_naming_the_field(setup: Setup) -> None:
    """An invalid body (or filter) on each route is 422 with the bad field named."""
    for method, path, body in INVALID:
        answer = setup.client.request(method, path, json=body, headers=setup.admin)
        error = error_of(answer, 422)
        assert error["fields"] and all(f["field"] and f["reason"] for f in error["fields"]), (
            path,
            error,
        )


def test_a_write_route_is_429_with_retry_after_past_the_keys_budget(
    ledger: FlightLedger, db_url: str
) -> None:
    """The per-key budget applies to the record routes too (the scheduling system's key)."""
    clock = [0.0]
    app, view = api_app(
        ledger, db_url, rate=RateLimiter(per_minute=60, burst=1, monotonic=lambda: clock[0])
    )
    writer = bearer(new_key(ledger, "alpha", [WRITE], "scheduler"))
    with TestClient(app) as client:
        assert client.post("/api/v1/flights", json=flight("F-1"), headers=writer).status_code == 201
        refused = client.post("/api/v1/flights", json=flight("F-2"), headers=writer)
        error_of(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1
        with pytest.raises(NotFound):  # refused before anything was recorded
            ledger.history("alpha", "F-2")
        clock[0] += 1.0
        assert client.post("/api/v1/flights", json=flight("F-2"), headers=writer).status_code == 201
    view.close()


def test_the_readmes_curl_posts_a_flight_that_is_recorded(setup: Setup) -> None:
    """The README's scheduling-system example, sent as written (its body and headers), is 201
    with the answer it shows; sent again it is the duplicate the README promises."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    command = re.search(r"curl -sS -X POST (\S+) \\\n(.*?)'\n", readme, re.DOTALL)
    assert command is not None, "README.md: the curl example is gone"
    url, rest = command.group(1), command.group(2)
    assert url.endswith("/api/v1/flights") and "Authorization: Bearer" in rest
    body = json.loads(rest.split("-d '", 1)[1])
    writer = bearer(new_key(setup.ledger, "alpha", [WRITE], "scheduler"))
    answer = setup.client.post("/api/v1/flights", json=body, headers=writer)
    assert answer.status_code == 201, answer.text
    assert "set-cookie" not in answer.headers  # a key client gets no dashboard session
    assert answer.json()["reference"] == body["flight_id"] and answer.json()["duplicate"] is False
    again = setup.client.post("/api/v1/flights", json=body, headers=writer)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
