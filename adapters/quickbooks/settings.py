"""QboSettings: where QuickBooks lives and how we talk to it, read from FLIGHTLEDGER_* variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from adapters.authorization_url import INTUIT_AUTHORIZATION_ORIGIN, LOOPBACK_HOSTS

SANDBOX = "sandbox"
PRODUCTION = "production"
SIMULATOR = "simulator"
ENVIRONMENTS = (SANDBOX, PRODUCTION, SIMULATOR)

INTUIT_DISCOVERY = {
    SANDBOX: "https://developer.intuit.com/.well-known/openid_sandbox_configuration",
    PRODUCTION: "https://developer.intuit.com/.well-known/openid_configuration",
}
INTUIT_API_BASE = {
    SANDBOX: "https://sandbox-quickbooks.api.intuit.com/v3",
    PRODUCTION: "https://quickbooks.api.intuit.com/v3",
}
SIMULATOR_CLIENT_ID = "sim-client"
SIMULATOR_CLIENT_SECRET = "sim-secret"  # noqa: S105 - the simulator's public default credential
DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8400"
DEFAULT_REDIRECT_URI = "http://localhost:8000/qbo/callback"


class QboSettingsError(ValueError):
    """The QuickBooks configuration cannot be used; the message names the variable."""


def is_loopback(url: str) -> bool:
    """True when the URL points at this machine (a local simulator)."""
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


@dataclass(frozen=True)
class QboSettings:
    """Endpoints, app credentials and time scale for one QBO environment."""

    environment: str
    discovery_url: str
    api_base: str
    client_id: str
    client_secret: str
    redirect_uri: str
    minute_seconds: float = 60.0
    request_timeout: float = 30.0
    connect_timeout: float = 5.0

    def __repr__(self) -> str:
        """Never show the client secret."""
        return (
            f"QboSettings(environment={self.environment!r}, discovery_url={self.discovery_url!r}, "
            f"api_base={self.api_base!r}, client_id={self.client_id!r}, client_secret='***')"
        )

    __str__ = __repr__

    @property
    def is_local(self) -> bool:
        """Both endpoints are loopback (the simulator): plain http is allowed."""
        return is_loopback(self.discovery_url) and is_loopback(self.api_base)

    @property
    def authorization_origins(self) -> tuple[str, ...]:
        """Origins an authorization URL may point at: Intuit's, and a loopback simulator's."""
        origins = [INTUIT_AUTHORIZATION_ORIGIN]
        for url in (self.discovery_url, self.api_base):
            parts = urlsplit(url)
            if (parts.hostname or "") in LOOPBACK_HOSTS:
                origins.append(f"{parts.scheme}://{parts.netloc}")
        return tuple(dict.fromkeys(origins))

    def scaled(self, qbo_seconds: float) -> float:
        """QBO seconds on this time scale (60 s of QBO last minute_seconds)."""
        return qbo_seconds * self.minute_seconds / 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QboSettings:
        """Build from FLIGHTLEDGER_QBO_* variables (CLI.md, 'QBO endpoints')."""
        environment = env.get("FLIGHTLEDGER_QBO_ENVIRONMENT", SANDBOX).strip().lower() or SANDBOX
        if environment not in ENVIRONMENTS:
            raise QboSettingsError(
                "FLIGHTLEDGER_QBO_ENVIRONMENT must be sandbox, production or simulator"
            )
        if environment == SIMULATOR:
            base = env.get("FLIGHTLEDGER_QBO_SIMULATOR_URL", DEFAULT_SIMULATOR_URL).rstrip("/")
            discovery = f"{base}/.well-known/openid_configuration"
            api_base = f"{base}/v3"
            client_id, client_secret = SIMULATOR_CLIENT_ID, SIMULATOR_CLIENT_SECRET
        else:
            discovery = INTUIT_DISCOVERY[environment]
            api_base = INTUIT_API_BASE[environment]
            client_id, client_secret = "", ""
        discovery = env.get("FLIGHTLEDGER_QBO_DISCOVERY_URL") or discovery
        api_base = (env.get("FLIGHTLEDGER_QBO_API_BASE") or api_base).rstrip("/")
        for name, url in (("DISCOVERY_URL", discovery), ("API_BASE", api_base)):
            scheme = urlsplit(url).scheme
            if scheme != "https" and not (scheme == "http" and is_loopback(url)):
                raise QboSettingsError(
                    f"FLIGHTLEDGER_QBO_{name} must be https (plain http only for a loopback server)"
                )
        client_id = env.get("FLIGHTLEDGER_QBO_CLIENT_ID") or client_id
        client_secret = env.get("FLIGHTLEDGER_QBO_CLIENT_SECRET") or client_secret
        minute = env.get("FLIGHTLEDGER_QBO_MINUTE_SECONDS", "60")
        try:
            minute_seconds = float(minute)
        except ValueError:
            raise QboSettingsError("FLIGHTLEDGER_QBO_MINUTE_SECONDS must be a number") from None
        if minute_seconds <= 0:
            raise QboSettingsError("FLIGHTLEDGER_QBO_MINUTE_SECONDS must be positive")
        timeout = env.get("FLIGHTLEDGER_QBO_TIMEOUT", "30")
        try:
            request_timeout = float(timeout)
        except ValueError:
            raise QboSettingsError("FLIGHTLEDGER_QBO_TIMEOUT must be a number") from None
        return cls(
            environment=environment,
            discovery_url=discovery,
            api_base=api_base,
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=env.get("FLIGHTLEDGER_QBO_REDIRECT_URI") or DEFAULT_REDIRECT_URI,
            minute_seconds=minute_seconds,
            request_timeout=request_timeout,
        )

    def require_credentials(self) -> None:
        """Raise QboSettingsError unless a client id and secret are configured."""
        if not self.client_id or not self.client_secret:
            raise QboSettingsError(
                "FLIGHTLEDGER_QBO_CLIENT_ID and FLIGHTLEDGER_QBO_CLIENT_SECRET must be set "
                "(or FLIGHTLEDGER_QBO_ENVIRONMENT=simulator)"
            )
