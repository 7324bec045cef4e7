"""Users, permissions and signed sessions of the web dashboard (no third-party signer)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

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
    path: Path | None = None  # re-read when it changes: a user removed loses access at once
    _stamp: tuple[int, int] | None = None

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
        directory = cls.from_records(raw)
        directory.path = Path(path)
        directory._stamp = _file_stamp(directory.path)
        return directory

    def reload_if_changed(self) -> None:
        """Re-read the users file when it changed; unreadable or invalid, nobody is let in."""
        if self.path is None:
            return
        stamp = _file_stamp(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.entries = UserDirectory.from_file(self.path).entries
        except UsersFileError as exc:
            log.error("web_users_file_rejected", error=str(exc))
            self.entries = []
        else:
            log.info("web_users_file_reloaded", users=len(self.entries))

    def digest_of(self, name: str) -> str | None:
        """The stored token digest of a user (a session ends when it changes)."""
        return next((e.token_sha256 for e in self.entries if e.user.name == name), None)

    def authenticate(self, token: str) -> User | None:
        """The user whose token hashes to the stored digest, compared in constant time."""
        self.reload_if_changed()
        digest = hash_token(token)
        found: User | None = None
        for entry in self.entries:
            if hmac.compare_digest(entry.token_sha256, digest):
                found = entry.user
        return found

    def get(self, name: str) -> User | None:
        """A user by name (sessions carry the name; permissions are re-read every request)."""
        self.reload_if_changed()
        return next((e.user for e in self.entries if e.user.name == name), None)


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


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


class SessionRegistry:
    """The signed-in sessions this server has open: sign-out ends one here, not in the browser.

    A signed cookie alone stays valid until it expires; the dashboard therefore also requires
    its session id to be listed here, with the token digest the user signed in with (a changed
    token or a removed user ends the session). Kept in memory: a restart signs everyone out.
    """

    def __init__(self, max_sessions: int = 10_000) -> None:
        self._open: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_sessions = max_sessions

    def start(self, name: str, digest: str) -> str:
        """Open a session for the user; its id goes into the signed cookie."""
        sid = secrets.token_urlsafe(24)
        with self._lock:
            self._open[sid] = (name, digest)
            while len(self._open) > self.max_sessions:
                self._open.popitem(last=False)  # the oldest sign-in goes first
        return sid

    def end(self, sid: object) -> None:
        """Sign-out: the session id no longer lets anyone in."""
        if isinstance(sid, str):
            with self._lock:
                self._open.pop(sid, None)

    def holder(self, sid: object) -> tuple[str, str] | None:
        """(user name, token digest) of an open session, or None."""
        if not isinstance(sid, str):
            return None
        with self._lock:
            return self._open.get(sid)


class SignInThrottle:
    """Wrong sign-in tokens slow the guesser down: per client, and over all clients together.

    The sign-in form asks for a token only, so a wrong guess names no user: the per-user limit
    is the limit over all clients (every user's token is guessed through the same form).
    """

    def __init__(
        self,
        *,
        per_client: int = 10,
        overall: int = 100,
        window_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client = per_client
        self.overall = overall
        self.window = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._lock = threading.Lock()

    def _prune(self, times: deque[float], now: float) -> None:
        while times and now - times[0] >= self.window:
            times.popleft()

    def retry_after(self, client: str) -> int:
        """Seconds until this client may try again (0 = now)."""
        now = self._clock()
        with self._lock:
            waits = []
            mine = self._failures.get(client)
            if mine is not None:
                self._prune(mine, now)
                if len(mine) >= self.per_client:
                    waits.append(self.window - (now - mine[0]))
            self._prune(self._all, now)
            if len(self._all) >= self.overall:
                waits.append(self.window - (now - self._all[0]))
        return max(1, int(max(waits)) + 1) if waits else 0

    def failed(self, client: str) -> None:
        """Count a wrong token from this client."""
        now = self._clock()
        with self._lock:
            self._failures.setdefault(client, deque()).append(now)
            self._all.append(now)
            if len(self._failures) > 10_000:  # bounded: forget the oldest clients
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, client: str) -> None:
        """A right token clears this client's count."""
        with self._lock:
            self._failures.pop(client, None)
