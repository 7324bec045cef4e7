"""The one check of where an operator may be sent to connect QuickBooks, and its sentences.

Pure, but in adapters/ because it parses URLs (domain/ imports no urllib): the CLI
(adapters/quickbooks/oauth.py) and the dashboard (adapters/web) both call
`is_trusted_authorization_url` with the origins the QuickBooks settings trust
(`QboSettings.authorization_origins`).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

INTUIT_AUTHORIZATION_ORIGIN = "https://appcenter.intuit.com"
UNTRUSTED_URL_MESSAGE = "Untrusted QuickBooks redirect URL — refusing to navigate"
NO_URL_MESSAGE = "No authorization URL received from QuickBooks"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    default = 443 if scheme == "https" else 80
    return scheme, host.lower(), port or default


def is_trusted_authorization_url(url: str | None, trusted_origins: Sequence[str]) -> bool:
    """True only for a URL whose scheme, host and port equal one trusted origin, no userinfo;
    plain http only for a loopback origin (the local simulator)."""
    if not url:
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.username is not None or parts.password is not None or not parts.hostname:
        return False
    if parts.scheme not in ("https", "http"):
        return False
    candidate = _origin(parts.scheme, parts.hostname, port)
    for origin in trusted_origins:
        trusted = urlsplit(origin)
        if not trusted.hostname:
            continue
        if trusted.scheme == "http" and trusted.hostname not in LOOPBACK_HOSTS:
            continue  # plain http is trusted only for a loopback simulator
        if candidate == _origin(trusted.scheme, trusted.hostname, trusted.port):
            return True
    return False


def refusal_for(url: str | None) -> str:
    """The sentence shown when the authorization URL cannot be followed."""
    return NO_URL_MESSAGE if not url else UNTRUSTED_URL_MESSAGE
