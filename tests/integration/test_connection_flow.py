"""The whole connection flow against the simulator over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from adapters.authorization_url import NO_URL_MESSAGE, UNTRUSTED_URL_MESSAGE
from adapters.quickbooks.oauth import UntrustedAuthorizationUrl, validate_authorization_url
from domain.ports import FixedClock, OutcomeKind, ReasonCode
from qbo_simulator import QboSimulator, SimulatorConfig
from tests.helpers_qbo import SCHOOL, draft, make_rig
from workers.qbo import ConnectionStepRefused


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """A simulator with a short QBO minute."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6)) as simulator:
        yield simulator


def test_whole_flow(db_url: str, sim: QboSimulator, clock: FixedClock) -> None:
    """Connect, callback, test, invoices singly and batched, refresh, invalid_grant -> Reconnect."""
    rig = make_rig(db_url, sim, clock, connect=False)
    try:
        url, state = rig.service.connect(SCHOOL)
        location = requests.get(url, allow_redirects=False, timeout=5).headers["Location"]
        assert parse_qs(urlsplit(location).query)["state"] == [state]
        result = rig.service.callback_steps(SCHOOL, location, "ana")
        assert result.steps == [
            "QuickBooks connected! Verifying...",
            "Connected to Sunrise Flight School (US)",
        ]
        assert rig.service.test(SCHOOL, "ana").message == "Connected to Sunrise Flight School (US)"
        status = rig.service.status(SCHOOL)
        assert (status["pill"], status["tone"], status["company"]) == (
            "Connected",
            "green",
            "Sunrise Flight School",
        )
        assert status["realm"] == sim.config.realm and status["days_left"] == 101

        gateway = rig.gateway()
        assert gateway.push_invoice(draft(1)).kind == OutcomeKind.SYNCED
        batch = gateway.push_invoices([draft(n) for n in range(2, 12)])
        assert all(o.kind == OutcomeKind.SYNCED for o in batch)

        sim.set_faults(expire_access_tokens_now=True)
        assert gateway.push_invoice(draft(12)).kind == OutcomeKind.SYNCED
        assert len(sim.invoices()) == 12

        sim.set_faults(revoke_refresh_tokens=True, expire_access_tokens_now=True)
        expired = rig.gateway().push_invoice(draft(13))
        assert expired.reason_code == ReasonCode.AUTH_EXPIRED
        status = rig.service.status(SCHOOL)
        assert (status["pill"], status["tone"], status["badge"]) == (
            "Reconnect",
            "red",
            "Reconnect",
        )
        assert "invalid_grant" in (status["last_error"] or "")
        types = [e.type for e in rig.ledger.history(SCHOOL, "connection")]
        assert types[:3] == ["Registered", "Connected", "ConnectionTested"]
        assert "TokensRefreshed" in types and types[-1] == "RefreshTokenExpired"

        rig.service.connect_simulator(SCHOOL, "ana")  # reconnect heals it
        assert rig.service.status(SCHOOL)["pill"] == "Connected"
        assert rig.service.disconnect(SCHOOL, "ana")
        assert rig.vault.get_tokens(SCHOOL) is None
        assert rig.service.status(SCHOOL)["pill"] == "Not connected"
    finally:
        rig.ledger.close()


def test_state_mismatch_refused(sqlite_url: str, sim: QboSimulator, clock: FixedClock) -> None:
    """A callback with an unknown or reused state is refused and nothing is connected."""
    rig = make_rig(sqlite_url, sim, clock, connect=False)
    url, state = rig.service.connect(SCHOOL)
    location = requests.get(url, allow_redirects=False, timeout=5).headers["Location"]
    forged = location.replace(state, "forged-state")
    with pytest.raises(ConnectionStepRefused, match="run 'connection connect' again"):
        rig.service.callback(SCHOOL, forged, "mallory")
    assert rig.service.callback(SCHOOL, location, "ana").ok
    with pytest.raises(ConnectionStepRefused):  # single use
        rig.service.callback(SCHOOL, location, "ana")
    rig.ledger.close()


def test_expired_state_refused(sqlite_url: str, sim: QboSimulator, clock: FixedClock) -> None:
    """A state older than its time to live is refused."""
    rig = make_rig(sqlite_url, sim, clock, connect=False)
    url, _ = rig.service.connect(SCHOOL)
    location = requests.get(url, allow_redirects=False, timeout=5).headers["Location"]
    clock.advance(11 * 60)
    with pytest.raises(ConnectionStepRefused):
        rig.service.callback(SCHOOL, location, "ana")
    rig.ledger.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://evil.example.com/connect/oauth2?x=1", UNTRUSTED_URL_MESSAGE),
        ("http://appcenter.intuit.com/connect/oauth2", UNTRUSTED_URL_MESSAGE),
        ("https://appcenter.intuit.com.evil.io/connect/oauth2", UNTRUSTED_URL_MESSAGE),
        ("https://user@appcenter.intuit.com/connect/oauth2", UNTRUSTED_URL_MESSAGE),
        ("", NO_URL_MESSAGE),
        (None, NO_URL_MESSAGE),
    ],
)
def test_untrusted_authorization_url_refused(
    sqlite_url: str, sim: QboSimulator, clock: FixedClock, url: str | None, message: str
) -> None:
    """Only https on appcenter.intuit.com (or the configured loopback simulator) is followed."""
    settings = make_rig(sqlite_url, sim, clock, connect=False).service.settings
    with pytest.raises(UntrustedAuthorizationUrl) as err:
        validate_authorization_url(url, settings)
    assert str(err.value) == message
    assert validate_authorization_url("https://appcenter.intuit.com/connect/oauth2?a=b", settings)


def test_discovery_pointing_elsewhere_is_refused(
    sqlite_url: str, sim: QboSimulator, clock: FixedClock
) -> None:
    """A discovery document whose authorize endpoint is foreign makes connect refuse."""
    rig = make_rig(sqlite_url, sim, clock, connect=False)
    client = rig.service.oauth._client()
    client.auth_endpoint = "https://phish.example.net/connect/oauth2"
    with pytest.raises(UntrustedAuthorizationUrl, match="Untrusted QuickBooks redirect URL"):
        rig.service.connect(SCHOOL)
    rig.ledger.close()
