"""Users, permissions and signed sessions of the web dashboard (no third-party signer)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VIEW = "billing:view"
RETRY = "billing:retry"
ADMIN = "billing:admin"
ALL = "*"
KNOWN_PERMISSIONS = frozenset({VIEW, RETRY, ADMIN, ALL})

PERMISSION_WORDS = {
    VIEW: "view billing",
    RETRY: "retry, dismiss or record billing events",
    ADMIN: "administer the QuickBooks connection, mappings and settings",
}

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class UsersFileError(ValueError):
    """The users file cannot be read or is not a list of valid users."""


@dataclass(frozen=True)
class User:
    """Someone who acts in exactly one school with a set of permissions."""

    name: str
    school: str
    permissions: frozenset[str]
    local: bool = False  # the single local operator of a loopback-only server

    def can(self, permission: str) -> bool:
        """Whether this user holds the permission (`*` grants all)."""
        return ALL in self.permissions or permission in self.permissions


def local_operator(school: str, name: str = "local-operator") -> User:
    """The single local operator (all permissions) of a loopback server without a users file."""
    return User(name=name, school=school, permissions=frozenset({ALL}), local=True)


def hash_token(token: str) -> str:
    """The hex SHA-256 of a sign-in token, as stored in the users file."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Entry:
    user: User
    token_sha256: str


@dataclass
class UserDirectory:
    """The users allowed to sign in, each with a hashed token; tokens are never kept in clear."""

    entries: list[_Entry] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> UserDirectory:
        """Build from `[{"name", "token_sha256", "school", "permissions": [...]}]`."""
        entries: list[_Entry] = []
        seen: set[str] = set()
        for index, record in enumerate(records, start=1):
            entries.append(_parse_entry(index, record, seen))
        return cls(entries)

    @classmethod
    def from_file(cls, path: str | Path) -> UserDirectory:
        """Load the JSON users file (FLIGHTLEDGER_USERS_FILE)."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsersFileError(f"cannot read users file {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise UsersFileError(f"users file {path} is not valid JSON: {exc.msg}") from None
        if not isinstance(raw, list):
            raise UsersFileError(f"users file {path} must hold a JSON list of users")
        return cls.from_records(raw)

    def authenticate(self, token: str) -> User | None:
        """The user whose token hashes to the stored digest, compared in constant time."""
        digest = hash_token(token)
        found: User | None = None
        for entry in self.entries:
            if hmac.compare_digest(entry.token_sha256, digest):
                found = entry.user
        return found

    def get(self, name: str) -> User | None:
        """A user by name (sessions carry the name; permissions are re-read every request)."""
        return next((e.user for e in self.entries if e.user.name == name), None)


def _parse_entry(index: int, record: Mapping[str, Any], seen: set[str]) -> _Entry:
    where = f"users file entry {index}"
    if not isinstance(record, Mapping):
        raise UsersFileError(f"{where} must be an object")
    name = record.get("name")
    digest = record.get("token_sha256")
    school = record.get("school")
    permissions = record.get("permissions")
    if not isinstance(name, str) or not name.strip():
        raise UsersFileError(f"{where}: name is required")
    if name in seen:
        raise UsersFileError(f"{where}: user {name!r} appears twice")
    seen.add(name)
    if not isinstance(digest, str) or len(digest) != 64:
        raise UsersFileError(f"{where} ({name}): token_sha256 must be 64 hex characters")
    try:
        bytes.fromhex(digest)
    except ValueError:
        raise UsersFileError(f"{where} ({name}): token_sha256 must be hex") from None
    if not isinstance(school, str) or not school.strip():
        raise UsersFileError(f"{where} ({name}): school is required")
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise UsersFileError(f"{where} ({name}): permissions must be a list of strings")
    unknown = sorted(set(permissions) - KNOWN_PERMISSIONS)
    if unknown:
        raise UsersFileError(f"{where} ({name}): unknown permission(s) {', '.join(unknown)}")
    user = User(name=name, school=school, permissions=frozenset(permissions))
    return _Entry(user=user, token_sha256=digest.lower())


def is_loopback(host: str) -> bool:
    """Whether binding this host keeps the server reachable from this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SessionSigner:
    """Signs a small JSON session with HMAC-SHA256; a tampered or stale cookie reads as none."""

    def __init__(self, key: bytes, max_age_seconds: int = 12 * 3600) -> None:
        if len(key) < 16:
            raise ValueError("the session key must be at least 16 bytes")
        self._key = key
        self.max_age_seconds = max_age_seconds

    def _mac(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def sign(self, data: Mapping[str, Any], now: float | None = None) -> str:
        """The cookie value for a session."""
        body = dict(data)
        body["iat"] = int(time.time() if now is None else now)
        payload = base64.urlsafe_b64encode(
            json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
        )
        return f"{payload.decode('ascii')}.{self._mac(payload)}"

    def unsign(self, value: str, now: float | None = None) -> dict[str, Any] | None:
        """The session in a cookie value, or None when forged, malformed or expired."""
        payload_text, _, mac = value.rpartition(".")
        if not payload_text or not mac:
            return None
        payload = payload_text.encode("ascii", errors="replace")
        if not hmac.compare_digest(self._mac(payload), mac):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload))
        except (ValueError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        issued = data.get("iat")
        current = time.time() if now is None else now
        if not isinstance(issued, int) or current - issued > self.max_age_seconds:
            return None
        return data


def new_csrf_token() -> str:
    """A fresh per-session CSRF token."""
    return secrets.token_urlsafe(32)
