"""OAuth 2.0 with Intuit through intuitlib: authorization URL (validated), code exchange,
refresh and revoke. intuitlib objects and errors never leave this module: failures become
QboAuthError carrying a classify.Failure.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import structlog
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError

from adapters.authorization_url import NO_URL_MESSAGE, is_trusted_authorization_url, refusal_for
from adapters.quickbooks.classify import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    REFUSED,
    RESET,
    Failure,
    describe,
    parse_fault,
)
from adapters.quickbooks.settings import QboSettings
from domain.ports import AuthorizationFailed, OAuthCallback, TokenSet

log = structlog.get_logger(__name__)

HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"


class QboAuthError(AuthorizationFailed):
    """An OAuth call failed; ``failure`` says how (code 'invalid_grant' when the token is dead)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(describe(failure))
        self.failure = failure

    @property
    def invalid_grant(self) -> bool:
        """The refresh token (or code) is expired or revoked."""
        return self.failure.code == "invalid_grant"


class UntrustedAuthorizationUrl(ValueError):
    """The authorization URL is missing or not on a trusted host; the message is DESIGN.md's."""


def read_callback(redirect_url: str) -> OAuthCallback:
    """What Intuit's redirect back carried: state, code, realmId, or error (+ description)."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(redirect_url).query).items()}
    return OAuthCallback(
        state=query.get("state", ""),
        code=query.get("code", ""),
        realm=query.get("realmId", ""),
        error=query.get("error", ""),
        error_description=query.get("error_description", ""),
    )


def validate_authorization_url(url: str | None, settings: QboSettings) -> str:
    """The URL when it is on an origin the settings trust (adapters.authorization_url's check):
    https on Intuit's host, or the configured loopback simulator."""
    if not is_trusted_authorization_url(url, settings.authorization_origins):
        raise UntrustedAuthorizationUrl(refusal_for(url))
    assert url is not None  # a trusted URL is never empty
    return url


class _TimedAuthClient(AuthClient):  # type: ignore[misc]
    """intuitlib's AuthClient (a requests.Session) with a timeout on every call."""

    timeout: tuple[float, float] = (5.0, 30.0)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


_clients: dict[QboSettings, OAuthClient] = {}
_clients_lock = threading.Lock()


def oauth_client(settings: QboSettings) -> OAuthClient:
    """The cached OAuthClient of these settings (discovery is fetched once)."""
    with _clients_lock:
        client = _clients.get(settings)
        if client is None:
            client = _clients[settings] = OAuthClient(settings)
        return client


class OAuthClient:
    """Intuit's OAuth endpoints for one app; thread-safe (calls are serialised)."""

    def __init__(self, settings: QboSettings) -> None:
        settings.require_credentials()
        self.settings = settings
        self._lock = threading.Lock()
        self._auth: _TimedAuthClient | None = None

    def _client(self) -> _TimedAuthClient:
        if self._auth is None:
            _TimedAuthClient.timeout = (
                self.settings.connect_timeout,
                self.settings.request_timeout,
            )
            try:
                self._auth = _TimedAuthClient(
                    client_id=self.settings.client_id,
                    client_secret=self.settings.client_secret,
                    redirect_uri=self.settings.redirect_uri,
                    environment=self.settings.discovery_url,
                )
            except AuthClientError as exc:
                raise QboAuthError(_failure_from(exc)) from None
            except requests.RequestException as exc:
                raise QboAuthError(_transport_failure(exc)) from None
            except ValueError:
                raise QboAuthError(
                    Failure(message="QuickBooks discovery document is not valid JSON")
                ) from None
            except KeyError as exc:
                if exc.args and exc.args[0] == "authorization_endpoint":
                    raise UntrustedAuthorizationUrl(NO_URL_MESSAGE) from None
                raise QboAuthError(
                    Failure(message=f"QuickBooks discovery document has no {exc.args[0]}")
                ) from None
            self._auth.headers[HARD_EXPIRY_HEADER] = "true"
        return self._auth

    def authorization_url(self, state: str) -> str:
        """The validated URL to send the operator to."""
        with self._lock:
            client = self._client()
            if not getattr(client, "auth_endpoint", None):
                # intuitlib would glue "None?client_id=..." together: say what really happened
                raise UntrustedAuthorizationUrl(NO_URL_MESSAGE)
            url = client.get_authorization_url([Scopes.ACCOUNTING], state_token=state)
        return validate_authorization_url(url, self.settings)

    def exchange(self, code: str, realm: str, now: datetime) -> TokenSet:
        """Trade an authorization code for tokens."""
        return self._token_call(lambda c: c.get_bearer_token(code, realm_id=realm), realm, now)

    def refresh(self, refresh_token: str, realm: str, now: datetime) -> TokenSet:
        """Trade a refresh token for new tokens (the refresh token rotates)."""
        return self._token_call(lambda c: c.refresh(refresh_token=refresh_token), realm, now)

    def revoke(self, token: str) -> None:
        """Revoke a refresh (or access) token; the connection ends at Intuit."""
        with self._lock:
            client = self._client()
            try:
                client.revoke(token=token)
            except AuthClientError as exc:
                raise QboAuthError(_failure_from(exc)) from None
            except requests.RequestException as exc:
                raise QboAuthError(_transport_failure(exc)) from None
            finally:
                _forget(client)

    def _token_call(self, call: Any, realm: str, now: datetime) -> TokenSet:
        with self._lock:
            client = self._client()
            _forget(client)
            try:
                call(client)
                tokens = TokenSet(
                    realm=realm,
                    access_token=str(client.access_token),
                    access_expires_at=now + timedelta(seconds=int(client.expires_in or 3600)),
                    refresh_token=str(client.refresh_token),
                    refresh_expires_at=_after(
                        now, getattr(client, "x_refresh_token_expires_in", None)
                    ),
                    hard_expires_at=_after(
                        now, getattr(client, "x_refresh_token_hard_expires_in", None)
                    ),
                )
            except AuthClientError as exc:
                failure = _failure_from(exc)
                log.warning("qbo_token_call_failed", realm=realm, code=failure.code)
                raise QboAuthError(failure) from None
            except requests.RequestException as exc:
                raise QboAuthError(_transport_failure(exc)) from None
            finally:
                _forget(client)
        if tokens.access_token in ("", str(None)):
            raise QboAuthError(Failure(message="QuickBooks returned no access token"))
        return tokens


def _after(now: datetime, seconds: Any) -> datetime | None:
    if seconds in (None, ""):
        return None
    return now + timedelta(seconds=int(seconds))


def _forget(client: Any) -> None:
    """Drop token values from the shared client object."""
    for name in (
        "access_token",
        "refresh_token",
        "expires_in",
        "x_refresh_token_expires_in",
        "x_refresh_token_hard_expires_in",
        "id_token",
    ):
        setattr(client, name, None)


def _failure_from(exc: AuthClientError) -> Failure:
    body = exc.content.decode(errors="replace") if isinstance(exc.content, bytes) else ""
    failure = parse_fault(exc.status_code, body)
    if failure.body_kind in ("html", "text", "none") and not failure.code:
        return Failure(http_status=exc.status_code, message=failure.message, body_kind="oauth")
    return failure


def _transport_failure(exc: requests.RequestException) -> Failure:
    return Failure(transport=transport_kind(exc))


def transport_kind(exc: requests.RequestException) -> str:
    """REFUSED / CONNECT_TIMEOUT (surely not sent) or READ_TIMEOUT / RESET (maybe received)."""
    if isinstance(exc, requests.ConnectTimeout):
        return CONNECT_TIMEOUT
    if isinstance(exc, requests.Timeout):
        return READ_TIMEOUT
    if isinstance(exc, requests.ConnectionError):
        text = repr(exc)
        if "NewConnectionError" in text or "Connection refused" in text or "NameResolution" in text:
            return REFUSED
        return RESET
    return RESET
