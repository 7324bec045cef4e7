"""services.connection's use cases on in-memory ports: no intuitlib, vault or QuickBooks needed
(the same use cases run against the simulator in tests/integration/test_connection_flow.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.application import FlightLedger
from domain.connection import ConnectionState
from domain.ports import (
    AuthorizationFailed,
    CompanyInfo,
    ConnectionCheck,
    FixedClock,
    OAuthCallback,
    OutcomeKind,
    PushOutcome,
    TokenSet,
)
from domain.preflight import NOT_CONNECTED_MESSAGE
from services.connection import (
    CONNECTED_VERIFYING,
    STATE_MISMATCH,
    ConnectionStepRefused,
    ConnectionUseCases,
)

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
SCHOOL = "sunrise"


@dataclass
class MemoryVault:
    """ConnectionVault in a dict."""

    tokens: dict[str, TokenSet] = field(default_factory=dict)
    states: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def put_state(self, school: str, state: str, *, ttl: timedelta, now: datetime) -> None:
        self.states[(school, state)] = now + ttl

    def consume_state(self, school: str, state: str, *, now: datetime) -> bool:
        expires = self.states.pop((school, state), None)
        return expires is not None and now < expires

    def get_tokens(self, school: str) -> TokenSet | None:
        return self.tokens.get(school)

    def put_tokens(self, school: str, tokens: TokenSet) -> None:
        self.tokens[school] = tokens

    def delete_tokens(self, school: str) -> bool:
        return self.tokens.pop(school, None) is not None

    @contextmanager
    def refresh_lock(self, school: str) -> Iterator[None]:
        yield


@dataclass
class FakeOAuth:
    """OAuthPort that grants every code for its realm; revoke can be made to fail."""

    revoke_fails: bool = False
    revoked: list[str] = field(default_factory=list)

    def authorization_url(self, state: str) -> str:
        return f"https://appcenter.intuit.com/connect/oauth2?state={state}"

    def exchange(self, code: str, realm: str, now: datetime) -> TokenSet:
        return TokenSet(realm, f"access-{code}", now + timedelta(hours=1), "refresh", None)

    def revoke(self, token: str) -> None:
        self.revoked.append(token)
        if self.revoke_fails:
            raise AuthorizationFailed("Intuit did not answer")


@dataclass
class Directory:
    """CompanyDirectory: realms the tokens open, and a probe that always connects."""

    opens: set[str]

    def company_with(self, school: str, tokens: TokenSet) -> CompanyInfo | PushOutcome:
        if tokens.realm in self.opens:
            return CompanyInfo("Sunrise Flight School", "US")
        return PushOutcome(event_id=uuid4(), kind=OutcomeKind.ACTION_REQUIRED, message="403")

    def probe(self, school: str) -> Any:
        return self

    def test_connection(self) -> ConnectionCheck:
        info = CompanyInfo("Sunrise Flight School", "US")
        return ConnectionCheck(ok=True, company=info, message="Connected to Sunrise (US)")

    def custom_txn_numbers(self) -> bool | None:
        return True


def callback_url(state: str, realm: str = "9130") -> str:
    return f"http://localhost/qbo/callback?state={state}&code=c1&realmId={realm}"


def read(url: str) -> OAuthCallback:
    query = dict(part.split("=", 1) for part in url.partition("?")[2].split("&"))
    return OAuthCallback(
        state=query.get("state", ""), code=query.get("code", ""), realm=query.get("realmId", "")
    )


@pytest.fixture
def parts() -> tuple[ConnectionUseCases, MemoryVault, FakeOAuth]:
    ledger = FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=FixedClock(T0))
    vault, oauth = MemoryVault(), FakeOAuth()
    use_cases = ConnectionUseCases(
        ledger,
        vault=vault,
        oauth=lambda: oauth,
        read_callback=read,
        companies=Directory(opens={"9130"}),
        open_view=lambda: pytest.fail("no view needed without a previous company"),
    )
    return use_cases, vault, oauth


def test_connect_callback_test_disconnect(
    parts: tuple[ConnectionUseCases, MemoryVault, FakeOAuth],
) -> None:
    """The whole flow on the ports: state used once, tokens stored, Disconnected recorded even
    when Intuit's revoke fails."""
    use_cases, vault, oauth = parts
    _url, state = use_cases.connect(SCHOOL)
    result = use_cases.callback_steps(SCHOOL, callback_url(state), "ana")
    assert result.steps == [CONNECTED_VERIFYING, "Connected to Sunrise (US)"]
    assert vault.tokens[SCHOOL].realm == "9130"
    assert use_cases.status(SCHOOL)["company"] == "Sunrise Flight School"
    with pytest.raises(ConnectionStepRefused, match="run 'connection connect' again"):
        use_cases.callback(SCHOOL, callback_url(state), "ana")  # the state served once

    oauth.revoke_fails = True
    assert use_cases.disconnect(SCHOOL, "ana") is True
    assert oauth.revoked == ["refresh"] and SCHOOL not in vault.tokens
    assert use_cases.ledger.connection(SCHOOL).state == ConnectionState.DISCONNECTED
    assert use_cases.test(SCHOOL, "ana").message == NOT_CONNECTED_MESSAGE


def test_a_realm_the_tokens_do_not_open_stores_nothing(
    parts: tuple[ConnectionUseCases, MemoryVault, FakeOAuth],
) -> None:
    """A tampered realmId is refused before the vault or the ledger changes."""
    use_cases, vault, _oauth = parts
    _url, state = use_cases.connect(SCHOOL)
    with pytest.raises(ConnectionStepRefused, match="did not open company 4620"):
        use_cases.callback(SCHOOL, callback_url(state, realm="4620"), "ana")
    assert vault.tokens == {}
    assert use_cases.ledger.connection(SCHOOL).state == ConnectionState.NEVER
    with pytest.raises(ConnectionStepRefused) as refused:
        use_cases.callback(SCHOOL, callback_url("forged"), "ana")
    assert str(refused.value) == STATE_MISMATCH
