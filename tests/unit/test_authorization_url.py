"""The one trusted-URL check the CLI and the dashboard share (domain/authorization_url.py)."""

from __future__ import annotations

import pytest

from adapters.authorization_url import (
    INTUIT_AUTHORIZATION_ORIGIN,
    NO_URL_MESSAGE,
    UNTRUSTED_URL_MESSAGE,
    is_trusted_authorization_url,
    refusal_for,
)
from adapters.quickbooks.oauth import UntrustedAuthorizationUrl, validate_authorization_url
from adapters.quickbooks.settings import QboSettings

SIMULATOR = {"FLIGHTLEDGER_QBO_ENVIRONMENT": "simulator"}


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://appcenter.intuit.com/connect/oauth2?x=1", True),
        ("http://appcenter.intuit.com/connect/oauth2", False),
        ("https://appcenter.intuit.com:444/connect/oauth2", False),
        ("https://appcenter.intuit.com.evil.io/connect/oauth2", False),
        ("https://user@appcenter.intuit.com/connect/oauth2", False),
        ("javascript:alert(1)", False),
        ("", False),
        (None, False),
    ],
)
def test_only_intuits_origin_is_trusted_by_default(url: str | None, trusted: bool) -> None:
    """Scheme, host and port must equal Intuit's origin; userinfo and look-alikes are refused."""
    assert is_trusted_authorization_url(url, [INTUIT_AUTHORIZATION_ORIGIN]) is trusted


def test_the_settings_trust_the_loopback_simulator_and_the_cli_uses_the_same_check() -> None:
    """The simulator's origin is trusted over plain http; the CLI refuses with the one sentence."""
    settings = QboSettings.from_env(SIMULATOR)
    origins = settings.authorization_origins
    assert origins[0] == INTUIT_AUTHORIZATION_ORIGIN and len(origins) == 2
    local = f"{origins[1]}/connect/oauth2?state=s"
    assert validate_authorization_url(local, settings) == local
    for url, sentence in (
        ("https://evil.example.com/x", UNTRUSTED_URL_MESSAGE),
        ("", NO_URL_MESSAGE),
    ):
        with pytest.raises(UntrustedAuthorizationUrl) as refused:
            validate_authorization_url(url, settings)
        assert str(refused.value) == sentence == refusal_for(url)
