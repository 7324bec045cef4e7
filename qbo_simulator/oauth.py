"""OAuth 2.0 as Intuit runs it: discovery, authorize (auto-consent), token, revoke.

Refresh tokens rotate on every refresh and the previous value is invalid at once (stricter than
Intuit, which keeps returning the same value for about a day). Revoking any token of a
connection revokes the refresh token and every access token of that connection.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from qbo_simulator.config import SimulatorConfig
from qbo_simulator.envelopes import JsonDict, Response, json_response, oauth_error

INVALID_REFRESH = "Incorrect or invalid refresh token"


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    realm: str
    expires_at: float


@dataclass
class _Connection:
    realm: str
    client_id: str
    hard_expires_at: float
    revoked: bool = False


@dataclass
class _Token:
    connection: int
    expires_at: float


def discovery_document(base_url: str, *, authorization_endpoint: bool = True) -> JsonDict:
    """The OpenID discovery document, every endpoint pointing back at ``base_url``."""
    document: JsonDict = {
        "issuer": f"{base_url}/op/v1",
        "authorization_endpoint": f"{base_url}/connect/oauth2",
        "token_endpoint": f"{base_url}/oauth2/v1/tokens/bearer",
        "userinfo_endpoint": f"{base_url}/v1/openid_connect/userinfo",
        "revocation_endpoint": f"{base_url}/v2/oauth2/tokens/revoke",
        "jwks_uri": f"{base_url}/oauth2/v1/certs",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "address", "phone"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
    }
    if not authorization_endpoint:
        document["authorization_endpoint"] = ""  # present but empty: no URL to send anyone to
    return document


class TokenAuthority:
    """Issues, rotates, checks and revokes tokens; thread-safe."""

    def __init__(
        self,
        config: SimulatorConfig,
        realm_for_connection: Callable[[dict[str, str]], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._realm_for = realm_for_connection
        self._clock = clock
        self._lock = threading.Lock()
        self.clients = {config.client_id: config.client_secret}
        self.clear()

    def clear(self) -> None:
        """Forget every code, connection and token (registered clients stay)."""
        with self._lock:
            self._codes: dict[str, _Code] = {}
            self._connections: dict[int, _Connection] = {}
            self._refresh: dict[str, _Token] = {}
            self._access: dict[str, _Token] = {}

    # ----- endpoints
    def authorize(self, params: dict[str, str]) -> Response:
        """GET /connect/oauth2: 302 to redirect_uri with code, state and realmId."""
        missing = [
            name
            for name in ("client_id", "response_type", "scope", "redirect_uri", "state")
            if not params.get(name)
        ]
        if missing:
            return oauth_error(400, "invalid_request", f"missing: {', '.join(missing)}")
        if params["client_id"] not in self.clients:
            return oauth_error(400, "invalid_client", "unknown client_id")
        if params["response_type"] != "code":
            return oauth_error(400, "unsupported_response_type")
        redirect = urlsplit(params["redirect_uri"])
        if redirect.scheme not in ("http", "https") or not redirect.netloc:
            return oauth_error(400, "invalid_request", "redirect_uri must be an absolute URL")
        realm = self._realm_for(params)
        code = "AB11" + secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(
                params["client_id"],
                params["redirect_uri"],
                realm,
                self._clock() + self.config.auth_code_seconds,
            )
        extra = urlencode({"code": code, "state": params["state"], "realmId": realm})
        query = f"{redirect.query}&{extra}" if redirect.query else extra
        location = urlunsplit(redirect._replace(query=query))
        return Response(status=302, headers={"Location": location}, content_type="text/plain")

    def _client(self, headers: dict[str, str]) -> str | None:
        value = headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(value[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, _, secret = decoded.partition(":")
        expected = self.clients.get(client_id)
        if expected is None or not secrets.compare_digest(expected, secret):
            return None
        return client_id

    def token(self, headers: dict[str, str], body: bytes) -> Response:
        """POST /oauth2/v1/tokens/bearer: authorization_code and refresh_token grants."""
        client_id = self._client(headers)
        if client_id is None:
            return oauth_error(401, "invalid_client")
        form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        grant = form.get("grant_type")
        hard_header = headers.get("x-include-refresh-token-hard-expires-in", "").lower() == "true"
        now = self._clock()
        with self._lock:
            if grant == "authorization_code":
                code = self._codes.pop(form.get("code", ""), None)
                if (
                    code is None
                    or code.expires_at < now
                    or code.client_id != client_id
                    or code.redirect_uri != form.get("redirect_uri")
                ):
                    return oauth_error(400, "invalid_grant")
                key = len(self._connections) + 1
                self._connections[key] = _Connection(
                    code.realm, client_id, now + self.config.hard_expiry_seconds
                )
                return self._issue(key, now, hard_header)
            if grant == "refresh_token":
                old = self._refresh.get(form.get("refresh_token", ""))
                connection = None if old is None else self._connections[old.connection]
                if (
                    old is None
                    or connection is None
                    or connection.revoked
                    or connection.client_id != client_id
                    or old.expires_at <= now
                ):
                    return oauth_error(400, "invalid_grant", INVALID_REFRESH)
                del self._refresh[form["refresh_token"]]
                return self._issue(old.connection, now, hard_header)
        return oauth_error(400, "unsupported_grant_type")

    def _issue(self, key: int, now: float, hard_header: bool) -> Response:
        connection = self._connections[key]
        hard_left = max(0, int(connection.hard_expires_at - now))
        refresh_seconds = min(self.config.refresh_token_seconds, hard_left)
        access = "eyJsim." + secrets.token_urlsafe(40)
        refresh = "AB11" + secrets.token_urlsafe(36)
        self._access[access] = _Token(key, now + self.config.access_token_seconds)
        self._refresh[refresh] = _Token(key, now + refresh_seconds)
        payload: JsonDict = {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": self.config.access_token_seconds,
            "x_refresh_token_expires_in": refresh_seconds,
        }
        if hard_header:
            payload["x_refresh_token_hard_expires_in"] = hard_left
        if not self.config.report_refresh_expiry:
            del payload["x_refresh_token_expires_in"]
            payload.pop("x_refresh_token_hard_expires_in", None)
        return json_response(200, payload, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def revoke(self, headers: dict[str, str], body: bytes) -> Response:
        """POST /v2/oauth2/tokens/revoke: revoke the connection a token belongs to."""
        if self._client(headers) is None:
            return oauth_error(401, "invalid_client")
        try:
            token = json.loads(body or b"{}").get("token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            return oauth_error(400, "invalid_request", "token is required")
        with self._lock:
            found = self._refresh.get(token) or self._access.get(token)
            if found is not None:
                self._revoke_connection(found.connection)
        return Response(status=200, content_type="text/plain")

    def _revoke_connection(self, key: int) -> None:
        self._connections[key].revoked = True
        for store in (self._refresh, self._access):
            for value in [v for v, t in store.items() if t.connection == key]:
                del store[value]

    # ----- checks and one-shot faults
    def access_realm(self, token: str) -> str | None:
        """The realm of a live access token, or None when unknown, expired or revoked."""
        with self._lock:
            found = self._access.get(token)
            if found is None or found.expires_at <= self._clock():
                return None
            connection = self._connections[found.connection]
            return None if connection.revoked else connection.realm

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired."""
        with self._lock:
            past = self._clock() - 1
            for token in self._access.values():
                token.expires_at = past

    def revoke_refresh_tokens(self) -> None:
        """Make every refresh token issued so far invalid (invalid_grant)."""
        with self._lock:
            self._refresh.clear()
