"""TokenVault: OAuth tokens, the client secret and OAuth states, encrypted at rest (AES-GCM).

One module per concept and backend: this one holds the port (`TokenVault`, whose token, secret
and OAuth-state methods and SQL statements are written once), the sealing code and
`VaultError`; `adapters/refresh_lock.py` holds the per-school refresh lock the vault hands out;
`adapters/vault_sqlite.py` and `adapters/vault_postgres.py` run the statements (each one
transaction) and translate sqlite3 / psycopg errors into `VaultUnavailable`, so no driver
error reaches a caller;
`adapters/secret_key.py` loads the key; `workers.qbo.token_vault` picks the backend.

Stored in the same database as the log (SQLite file or PostgreSQL schema), table
``flightledger_vault``, never in an event. Each value is one AES-GCM blob (12-byte nonce +
ciphertext); the associated data binds ``school|name`` so a blob cannot be moved to another
school or field. A school's token set is one blob, so a rotation replaces it atomically.

The key: adapters/secret_key.py.
"""

from __future__ import annotations

import hashlib
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.persistence import DatabaseUrl, setup_lock
from adapters.refresh_lock import RefreshLocks
from domain.ports import Clock, StoreUnavailable, TokenSet

TABLE = "flightledger_vault"
KEY_ENV = "FLIGHTLEDGER_SECRET_KEY"
TOKENS = "tokens"
STATE_PREFIX = "state:"


class VaultError(RuntimeError):
    """The vault cannot do what was asked; the message says why (never a secret)."""


class VaultUnavailable(VaultError, StoreUnavailable):
    """The vault's database could not be reached or failed: nothing changed, try again later."""


def seal(aead: AESGCM, school: str, name: str, plaintext: str) -> bytes:
    """AES-GCM: 12-byte random nonce + ciphertext, bound to ``school|name``."""
    nonce = secrets.token_bytes(12)
    return nonce + aead.encrypt(nonce, plaintext.encode(), f"{school}|{name}".encode())


def unseal(aead: AESGCM, school: str, name: str, blob: bytes) -> str:
    """Decrypt a sealed blob; VaultError when the key, school or name does not match."""
    try:
        return aead.decrypt(
            bytes(blob[:12]), bytes(blob[12:]), f"{school}|{name}".encode()
        ).decode()
    except InvalidTag:
        raise VaultError(
            f"the vault entry {name!r} of school {school!r} cannot be decrypted: "
            f"wrong {KEY_ENV} or a tampered entry"
        ) from None


# --- the vault ----------------------------------------------------------------------------------


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class TokenVault(ABC):
    """Encrypted secrets of every school in the log's database (one subclass per backend)."""

    # the backend's driver exceptions, turned into VaultError wherever the vault touches the db
    driver_errors: tuple[type[Exception], ...] = (OSError,)

    def __init__(self, db: DatabaseUrl, key: bytes, clock: Clock | None = None) -> None:
        if len(key) != 32:
            raise VaultError("the vault key must be 32 bytes")
        self.db = db
        self.clock: Clock = clock or _SystemClock()
        self._aead = AESGCM(key)
        self._refresh_locks = RefreshLocks(db, self.driver_errors)
        self._create_table()

    # storage: one row per (school, name), each statement one transaction; the statements are
    # written once here ("?" marks a parameter) and each backend runs them on its driver
    param = "?"  # the driver's parameter marker
    blob_type = "BLOB"

    @abstractmethod
    def _execute(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in a transaction of its own and return its rows; driver errors
        become VaultError (the message says whether the database could not be reached)."""

    def close(self) -> None:  # noqa: B027 - a backend without a kept connection has nothing
        """Let go of the backend's connection (the vault reconnects if used again)."""

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.param)

    def _create_table(self) -> None:
        try:
            with setup_lock(self.db):
                self._execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} (school TEXT NOT NULL, "
                    f"name TEXT NOT NULL, blob {self.blob_type} NOT NULL, expires_at TEXT, "
                    "updated_at TEXT NOT NULL, PRIMARY KEY (school, name))"
                )
        except self.driver_errors as exc:
            raise VaultUnavailable(f"the vault database cannot be set up: {exc}") from None

    def _upsert(self, school: str, name: str, blob: bytes, expires_at: str | None, at: str) -> None:
        self._execute(
            self._sql(
                f"INSERT INTO {TABLE} (school, name, blob, expires_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (school, name) DO UPDATE SET "
                "blob = EXCLUDED.blob, expires_at = EXCLUDED.expires_at, "
                "updated_at = EXCLUDED.updated_at"
            ),
            (school, name, blob, expires_at, at),
        )

    def _select(self, school: str, name: str) -> bytes | None:
        rows = self._execute(
            self._sql(f"SELECT blob FROM {TABLE} WHERE school = ? AND name = ?"), (school, name)
        )
        return bytes(rows[0][0]) if rows else None

    def _remove(self, school: str, name: str) -> bytes | None:
        """Delete one row in one statement; its blob, or None when there was none."""
        rows = self._execute(
            self._sql(f"DELETE FROM {TABLE} WHERE school = ? AND name = ? RETURNING blob"),
            (school, name),
        )
        return bytes(rows[0][0]) if rows else None

    def all_rows(self) -> list[tuple[str, str, bytes]]:
        """Every (school, name, blob) row, for inspection in tests."""
        rows = self._execute(f"SELECT school, name, blob FROM {TABLE}")
        return [(str(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def _put(self, school: str, name: str, plaintext: str, expires_at: datetime | None) -> None:
        blob = seal(self._aead, school, name, plaintext)
        self._upsert(
            school,
            name,
            blob,
            expires_at.isoformat() if expires_at else None,
            self.clock.now().isoformat(),
        )

    def _get(self, school: str, name: str) -> str | None:
        blob = self._select(school, name)
        return None if blob is None else unseal(self._aead, school, name, blob)

    # tokens
    def put_tokens(self, school: str, tokens: TokenSet) -> None:
        """Store (or atomically replace) a school's token set."""
        self._put(school, TOKENS, tokens.to_json(), tokens.refresh_expires_at)

    def get_tokens(self, school: str) -> TokenSet | None:
        """The school's token set, or None."""
        text = self._get(school, TOKENS)
        return None if text is None else TokenSet.from_json(text)

    def delete_tokens(self, school: str) -> bool:
        """Forget the school's tokens; True when there were some."""
        return self._remove(school, TOKENS) is not None

    # other secrets (e.g. the client secret)
    def put_secret(self, school: str, name: str, value: str) -> None:
        """Store a named secret."""
        self._put(school, f"secret:{name}", value, None)

    def get_secret(self, school: str, name: str) -> str | None:
        """A named secret, or None."""
        return self._get(school, f"secret:{name}")

    # OAuth states
    @staticmethod
    def _state_name(state: str) -> str:
        return STATE_PREFIX + hashlib.sha256(state.encode()).hexdigest()

    def put_state(self, school: str, state: str, *, ttl: timedelta, now: datetime) -> None:
        """Remember an OAuth state for one use until now + ttl."""
        expires = now + ttl
        self._put(school, self._state_name(state), expires.isoformat(), expires)

    def consume_state(self, school: str, state: str, *, now: datetime) -> bool:
        """True once for a stored, unexpired state; the state is gone afterwards."""
        name = self._state_name(state)
        blob = self._remove(school, name)
        if blob is None:
            return False
        expires = datetime.fromisoformat(unseal(self._aead, school, name, blob))
        return now < expires

    # per-realm refresh lock: its own concept (adapters/refresh_lock.py), handed out here
    # beside the tokens it guards
    @contextmanager
    def refresh_lock(self, school: str) -> Iterator[None]:
        """Only one refresh per school at a time, across threads and processes, so the
        dashboard and the worker never spend the same rotating refresh token twice."""
        with self._refresh_locks.hold(school, VaultUnavailable):
            yield
