"""Every request to `serve` logs with its request id, then its school and actor (issue 10)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter
from fastapi.testclient import TestClient
from structlog.typing import EventDict

from adapters.api.app import RETRY, ApiConfig
from domain.application import FlightLedger
from tests.api_support import api_app, bearer, new_key
from tests.logging_support import captured_logs

REQUEST_ID_HEADER = "X-Request-ID"
GENERATED = re.compile(r"[0-9a-f]{32}")


def _one(logs: list[EventDict], event: str) -> EventDict:
    found = [entry for entry in logs if entry["event"] == event]
    assert len(found) == 1, [entry["event"] for entry in logs]
    return found[0]


@contextmanager
def _client(ledger: FlightLedger, db_url: str, **extra: Any) -> Iterator[TestClient]:
    app, view = api_app(ledger, db_url, school="alpha", **extra)
    try:
        with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as client:
            yield client
    finally:
        view.close()


def test_an_api_request_logs_its_request_id_school_and_key_name_as_actor(
    ledger: FlightLedger, db_url: str
) -> None:
    """POST /retry-failed: its line carries the caller's X-Request-ID (echoed back), the key's
    school and the key's name as actor; a second request gets its own id, not the first one's;
    the key itself is in no record."""
    secret = new_key(ledger, "alpha", [RETRY], name="ops-robot")
    key = bearer(secret)
    with _client(ledger, db_url) as client, captured_logs() as logs:
        answer = client.post(
            "/api/v1/retry-failed", json={}, headers={**key, REQUEST_ID_HEADER: "req-42.a:b"}
        )
        again = client.post("/api/v1/retry-failed", json={}, headers=key)
    assert answer.headers[REQUEST_ID_HEADER] == "req-42.a:b"
    first, second = (e for e in logs if e["event"] == "api_retry_failed_requested")
    assert (first["request_id"], first["school"], first["actor"]) == (
        "req-42.a:b",
        "alpha",
        "ops-robot",
    )
    assert GENERATED.fullmatch(second["request_id"])
    assert again.headers[REQUEST_ID_HEADER] == second["request_id"]
    assert secret not in repr(logs)


def test_an_insane_incoming_request_id_is_replaced(ledger: FlightLedger, db_url: str) -> None:
    """An X-Request-ID with spaces, quotes or 129 characters is not trusted: a fresh id is
    bound and echoed instead."""
    key = bearer(new_key(ledger, "alpha", [RETRY], name="ops-robot"))
    with _client(ledger, db_url) as client:
        for bad in ('a" b', "x" * 129, "-leading-dash"):
            with captured_logs() as logs:
                answer = client.post(
                    "/api/v1/retry-failed", json={}, headers={**key, REQUEST_ID_HEADER: bad}
                )
            entry = _one(logs, "api_retry_failed_requested")
            assert GENERATED.fullmatch(entry["request_id"]), bad
            assert answer.headers[REQUEST_ID_HEADER] == entry["request_id"]


def test_an_unexpected_api_error_logs_and_answers_with_the_request_id(
    ledger: FlightLedger, db_url: str
) -> None:
    """A route that raises: the api_request_crashed line and the 500 answer carry the id."""

    def boom_route(router: APIRouter, cfg: ApiConfig) -> None:
        @router.get("/boom")
        def boom() -> None:
            raise RuntimeError("kaboom")

    with _client(ledger, db_url, extra_routes=[boom_route]) as client, captured_logs() as logs:
        answer = client.get("/api/v1/boom", headers={REQUEST_ID_HEADER: "crash-1"})
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal"
    assert answer.headers[REQUEST_ID_HEADER] == "crash-1"
    entry = _one(logs, "api_request_crashed")
    assert (entry["request_id"], entry["error"]) == ("crash-1", "RuntimeError")


def test_a_dashboard_request_logs_its_request_id_school_and_operator(
    ledger: FlightLedger, db_url: str
) -> None:
    """GET /audit/export on the dashboard: the line carries the request id and the signed-in
    operator as actor, with the school."""

    def export(school: str, since: Any, until: Any, fmt: str) -> Iterator[str]:
        yield "{}\n"

    app, view = api_app(ledger, db_url, school="alpha")
    app.state.web.audit_export = export
    try:
        with TestClient(app) as client, captured_logs() as logs:
            answer = client.get("/audit/export", headers={REQUEST_ID_HEADER: "web-7"})
    finally:
        view.close()
    assert answer.status_code == 200 and answer.headers[REQUEST_ID_HEADER] == "web-7"
    entry = _one(logs, "web_audit_exported")
    assert (entry["request_id"], entry["school"], entry["actor"]) == (
        "web-7",
        "alpha",
        "local-operator",
    )


def test_a_refused_host_is_logged_with_the_request_id(ledger: FlightLedger, db_url: str) -> None:
    """The host check runs before anything else, inside the request's context all the same."""
    app, view = api_app(ledger, db_url, school="alpha")
    try:
        with TestClient(app, base_url="http://evil.example") as client, captured_logs() as logs:
            answer = client.get("/", headers={REQUEST_ID_HEADER: "host-1"})
    finally:
        view.close()
    assert answer.status_code == 400 and answer.headers[REQUEST_ID_HEADER] == "host-1"
    assert _one(logs, "web_host_refused")["request_id"] == "host-1"
