"""Dashboard safety (issue 9): Host allow-list, Origin/Referer, logout, throttling, headers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adapters.web.app import create_app
from adapters.web.auth import SignInThrottle, UserDirectory, hash_token, local_operator
from adapters.web.security import served_hosts
from domain.application import FlightLedger
from tests.integration.test_web_app import (
    SESSION_KEY,
    FakeConnectionService,
    RealView,
    real_view,
    service,
    web_ledger,
)
from workers.commands.serve import allowed_hosts

__all__ = ["real_view", "service", "web_ledger"]  # fixtures used by name

HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options")


def users_file(path: Path, *names: str) -> Path:
    """Write a users file giving each name the token '<name>-token' and all permissions."""
    records = [
        {
            "name": n,
            "token_sha256": hash_token(f"{n}-token"),
            "school": "alpha",
            "permissions": ["*"],
        }
        for n in names
    ]
    path.write_text(json.dumps(records))
    return path


@pytest.fixture
def signin_app(
    web_ledger: FlightLedger, real_view: RealView, service: FakeConnectionService, tmp_path: Path
) -> Iterator[tuple[TestClient, Path]]:
    """A sign-in dashboard whose users come from a real users file (ann and bob)."""
    path = users_file(tmp_path / "users.json", "ann", "bob")
    app = create_app(
        ledger=web_ledger,
        view=real_view.view,
        refresh_view=real_view.refresh,
        session_key=SESSION_KEY,
        connections=service,
        users=UserDirectory.from_file(path),
    )
    with TestClient(app, follow_redirects=False, base_url="http://127.0.0.1:8000") as client:
        yield client, path


@pytest.fixture
def local_client(
    web_ledger: FlightLedger, real_view: RealView, service: FakeConnectionService
) -> Iterator[TestClient]:
    """The local-operator dashboard as `serve` builds it on 127.0.0.1."""
    app = create_app(
        ledger=web_ledger,
        view=real_view.view,
        refresh_view=real_view.refresh,
        session_key=SESSION_KEY,
        connections=service,
        local_user=local_operator("alpha"),
        allowed_hosts=allowed_hosts("127.0.0.1", {}),
    )
    with TestClient(app, follow_redirects=False, base_url="http://127.0.0.1:8000") as client:
        yield client


def csrf(client: TestClient, path: str = "/") -> str:
    """The CSRF token of a page."""
    found = re.search(r'name="csrf(?:-token)?" (?:value|content)="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def sign_in(client: TestClient, token: str) -> str:
    """Sign in; the new session's CSRF token."""
    done = client.post("/login", data={"csrf": csrf(client, "/login"), "token": token})
    assert done.status_code == 303, done.text
    return csrf(client)


def test_a_foreign_host_header_is_refused(local_client: TestClient) -> None:
    """DNS rebinding: `Host: attacker.example` gets a 400 and no page (nor CSRF token)."""
    rebound = local_client.get("/", headers={"host": "attacker.example:8000"})
    assert rebound.status_code == 400
    assert "csrf" not in rebound.text and "attacker.example" in rebound.text
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000"):
        assert local_client.get("/", headers={"host": host}).status_code == 200


def test_served_hosts_and_the_allow_list() -> None:
    """serve answers its bound address, loopback names and FLIGHTLEDGER_ALLOWED_HOSTS."""
    env = {"FLIGHTLEDGER_ALLOWED_HOSTS": "Books.Example.org, 10.0.0.5:8000"}
    hosts = allowed_hosts("0.0.0.0", env)
    assert "books.example.org" in hosts and "10.0.0.5" in hosts and "0.0.0.0" not in hosts
    assert "testserver" not in hosts
    redirect = {"FLIGHTLEDGER_QBO_REDIRECT_URI": "https://ops.school.test/qbo/callback"}
    assert "ops.school.test" in allowed_hosts("0.0.0.0", redirect)
    assert served_hosts("192.168.1.4")[0] == "192.168.1.4"


def test_a_post_from_another_origin_is_refused_even_with_the_token(
    local_client: TestClient, web_ledger: FlightLedger
) -> None:
    """A POST whose Origin (or Referer) is another site is refused before it acts."""
    token = csrf(local_client)
    foreign = local_client.post(
        "/disconnect", data={"csrf": token}, headers={"origin": "http://attacker.example"}
    )
    assert foreign.status_code == 403 and "another site" in foreign.text
    other_port = local_client.post(
        "/disconnect", data={"csrf": token}, headers={"origin": "http://127.0.0.1:9999"}
    )
    assert other_port.status_code == 403
    null = local_client.post("/disconnect", data={"csrf": token}, headers={"origin": "null"})
    assert null.status_code == 403
    referer = local_client.post(
        "/disconnect", data={"csrf": token}, headers={"referer": "http://evil.test/page"}
    )
    assert referer.status_code == 403
    assert [e.type for e in web_ledger.history("alpha", "connection")] == []
    own = local_client.post(
        "/disconnect", data={"csrf": token}, headers={"origin": "http://127.0.0.1:8000"}
    )
    assert own.status_code == 303


def test_security_headers_on_every_page(local_client: TestClient) -> None:
    """Pages, errors, static files and refusals all carry CSP, framing and sniffing headers."""
    responses = [
        local_client.get("/"),
        local_client.get("/events/" + "x" * 10),
        local_client.get("/static/card.js"),
        local_client.get("/", headers={"host": "attacker.example"}),
    ]
    for response in responses:
        for name in HEADERS:
            assert response.headers.get(name), (response.request.url, name)
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
    page = responses[0].text
    assert re.search(r"<script(?![^>]*\bsrc=)", page) is None, "no inline script"
    cookie = responses[0].headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_a_long_ref_is_not_echoed_whole(local_client: TestClient) -> None:
    """A 5,000-character ref on a 404 page is cut to a short prefix."""
    ref = "F" + "9" * 4999
    missing = local_client.get("/events/" + ref)
    assert missing.status_code == 404
    assert ref not in missing.text and ref[:80] in missing.text
    assert len(missing.text) < 6000


def test_sign_out_ends_the_session_server_side(
    signin_app: tuple[TestClient, Path],
) -> None:
    """After POST /logout, replaying the old cookie opens nothing."""
    client, _ = signin_app
    token = sign_in(client, "ann-token")
    old_cookie = client.cookies.get("flightledger_session")
    assert client.get("/").status_code == 200
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    client.cookies.clear()
    client.cookies.set("flightledger_session", old_cookie or "")
    assert client.get("/").status_code == 303  # back to sign-in


def test_a_user_removed_from_the_users_file_loses_access_next_request(
    signin_app: tuple[TestClient, Path],
) -> None:
    """Removing bob from the users file ends his session on his very next request."""
    client, path = signin_app
    sign_in(client, "bob-token")
    assert client.get("/").status_code == 200
    users_file(path, "ann")
    assert client.get("/").status_code == 303
    refused = client.post("/login", data={"csrf": csrf(client, "/login"), "token": "bob-token"})
    assert refused.status_code == 401


def test_a_changed_token_ends_the_session(signin_app: tuple[TestClient, Path]) -> None:
    """Rotating a user's token in the users file ends the sessions opened with the old one."""
    client, path = signin_app
    sign_in(client, "ann-token")
    records = json.loads(path.read_text())
    records[0]["token_sha256"] = hash_token("ann-new-token")
    path.write_text(json.dumps(records) + "\n")
    assert client.get("/").status_code == 303


def test_wrong_tokens_are_throttled_per_client(signin_app: tuple[TestClient, Path]) -> None:
    """After 10 wrong tokens a client gets 429 with Retry-After, even with the right token."""
    client, _ = signin_app
    codes = [
        client.post("/login", data={"csrf": csrf(client, "/login"), "token": f"guess-{n}"})
        for n in range(12)
    ]
    assert [c.status_code for c in codes[:10]] == [401] * 10
    assert codes[10].status_code == 429 and int(codes[10].headers["retry-after"]) > 0
    right = client.post("/login", data={"csrf": csrf(client, "/login"), "token": "ann-token"})
    assert right.status_code == 429


def test_throttle_per_client_and_overall_with_a_clock() -> None:
    """Per client, then over all clients; the window passes and the client may try again."""
    now = [0.0]
    throttle = SignInThrottle(per_client=3, overall=5, window_seconds=60, clock=lambda: now[0])
    for _ in range(3):
        throttle.failed("a")
    assert throttle.retry_after("a") == 61 and throttle.retry_after("b") == 0
    throttle.failed("b")
    throttle.failed("c")
    assert throttle.retry_after("d") > 0  # five wrong guesses overall: everyone waits
    now[0] = 61.0
    assert throttle.retry_after("a") == 0 and throttle.retry_after("d") == 0
    throttle.failed("a")
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0
