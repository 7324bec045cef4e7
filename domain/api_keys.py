"""API keys of a school (API.md): random secrets shown once, kept only as a SHA-256 hash.

A key reads `flk.<school>.<key id>.<secret>`; the school and id say where to look, the secret
is compared with the stored hash in constant time. One `ApiKeys` aggregate per school holds every
key (created, revoked) so revocation is an event in the log like any other change, and the log
answers "which key did this" for auditors (the key's name is the actor of what it does).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

RECORDS_WRITE = "records:write"
API_PERMISSIONS = frozenset({"billing:view", "billing:retry", "billing:admin", "*", RECORDS_WRITE})
KEY_PREFIX = "flk"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")


class KeyRefused(ValueError):
    """A key command does not apply (bad name or permission, unknown or revoked key)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class ApiKey:
    """One key as listed (never with its secret)."""

    id: str
    name: str
    school: str
    permissions: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def can(self, permission: str) -> bool:
        """Whether the key holds the permission (`*` grants the billing ones and records)."""
        return "*" in self.permissions or permission in self.permissions


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def key_text(school: str, key_id: str, secret: str) -> str:
    """The key as handed to its owner."""
    return f"{KEY_PREFIX}.{school}.{key_id}.{secret}"


def split_key(text: str) -> tuple[str, str, str] | None:
    """(school, key id, secret) of a well-formed key, else None."""
    parts = text.strip().split(".")
    if len(parts) != 4 or parts[0] != KEY_PREFIX or not _KEY_ID.match(parts[2]):
        return None
    if not parts[1] or not parts[3]:
        return None
    return parts[1], parts[2], parts[3]


def check_permissions(permissions: Iterable[str]) -> tuple[str, ...]:
    """The permissions, each known, without repeats; KeyRefused naming the first unknown one."""
    chosen = tuple(dict.fromkeys(p.strip() for p in permissions if p.strip()))
    if not chosen:
        raise KeyRefused(
            "permissions", f"give at least one of {', '.join(sorted(API_PERMISSIONS))}"
        )
    for permission in chosen:
        if permission not in API_PERMISSIONS:
            raise KeyRefused(
                "permissions",
                f"unknown permission {permission!r}; one of {', '.join(sorted(API_PERMISSIONS))}",
            )
    return chosen


def check_name(name: str) -> str:
    """A key name: 1-64 letters, digits, space, '.', '_', '@' or '-' (it is the log's actor)."""
    if not NAME_PATTERN.match(name):
        raise KeyRefused(
            "name", "must be 1-64 letters, digits, spaces, '.', '_', '@' or '-' (start with one)"
        )
    return name


class ApiKeys(Aggregate):
    """Every API key of one school."""

    class Started(Aggregate.Created):
        """The school's key ring exists."""

        school: str

        def apply(self, aggregate: Any) -> None:
            """No keys yet."""
            agg: ApiKeys = aggregate
            agg.school = self.school
            agg.keys = {}
            agg.hashes = {}

    class KeyCreated(Aggregate.Event):
        """A key was made (its secret's hash only)."""

        key_id: str
        name: str
        secret_sha256: str
        permissions: list[str]
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Remember the key."""
            agg: ApiKeys = aggregate
            agg.keys[self.key_id] = ApiKey(
                id=self.key_id,
                name=self.name,
                school=agg.school,
                permissions=tuple(self.permissions),
                created_at=self.timestamp,
                created_by=self.operator,
            )
            agg.hashes[self.key_id] = self.secret_sha256

    class KeyRevoked(Aggregate.Event):
        """A key was revoked: refused from now on."""

        key_id: str
        operator: str

        def apply(self, aggregate: Any) -> None:
            """Mark it revoked."""
            agg: ApiKeys = aggregate
            key = agg.keys[self.key_id]
            agg.keys[self.key_id] = ApiKey(**{**key.__dict__, "revoked_at": self.timestamp})

    school: str
    keys: dict[str, ApiKey]
    hashes: dict[str, str]

    def __init__(self) -> None:
        """State is set by the creation event's apply()."""

    def create_key(
        self,
        *,
        key_id: str,
        name: str,
        secret: str,
        permissions: Iterable[str],
        operator: str,
        at: datetime,
    ) -> ApiKey:
        """Add a key; its name must be unused among the school's active keys."""
        check_name(name)
        chosen = check_permissions(permissions)
        if any(k.name == name and k.active for k in self.keys.values()):
            raise KeyRefused("name", f"an active key named {name!r} exists; revoke it first")
        self.trigger_event(
            self.KeyCreated,
            key_id=key_id,
            name=name,
            secret_sha256=hash_secret(secret),
            permissions=list(chosen),
            operator=operator,
            timestamp=at,
        )
        return self.keys[key_id]

    def revoke(self, key_id: str, *, operator: str, at: datetime) -> None:
        """Revoke an active key."""
        key = self.keys.get(key_id)
        if key is None:
            raise KeyRefused("ID", f"no API key {key_id!r} in school {self.school!r}")
        if not key.active:
            raise KeyRefused("ID", f"API key {key_id!r} is already revoked")
        self.trigger_event(self.KeyRevoked, key_id=key_id, operator=operator, timestamp=at)

    def match(self, key_id: str, secret: str) -> ApiKey | None:
        """The active key whose stored hash matches the secret (constant-time compare)."""
        stored = self.hashes.get(key_id, "0" * 64)
        ok = hmac.compare_digest(stored, hash_secret(secret))
        key = self.keys.get(key_id)
        return key if ok and key is not None and key.active else None
