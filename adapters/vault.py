"""TokenVault: OAuth tokens, the client secret and OAuth states, encrypted at rest (AES-GCM).

Stored in the same database as the log (SQLite file or PostgreSQL schema), table
``flightledger_vault``, never in an event. Each value is one AES-GCM blob (12-byte nonce +
ciphertext); the associated data binds ``school|name`` so a blob cannot be moved to another
school or field. A school's token set is one blob, so a rotation replaces it atomically.

The key comes from ``FLIGHTLEDGER_SECRET_KEY``: urlsafe base64 of 32 bytes is used as is; any
other text is treated as a passphrase and stretched with scrypt (n=2**14, r=8, p=1, salt
``flightledger-vault-v1``) to 32 bytes. Without the variable, ``load_secret_key`` reads (or, for
the demo, creates with mode 0600) ``.flightledger/secret.key`` beside the SQLite database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.persistence import DatabaseUrl, process_lock, setup_lock

TABLE = "flightledger_vault"
KEY_ENV = "FLIGHTLEDGER_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
_SALT = b"flightledger-vault-v1"
TOKENS = "tokens"
STATE_PREFIX = "state:"


class VaultError(RuntimeError):
    """The vault cannot do what was asked; the message says why (never a secret)."""


@dataclass(frozen=True)
class TokenSet:
    """A school's OAuth tokens and their expiries."""

    realm: str
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime | None
    hard_expires_at: datetime | None = None

    def __repr__(self) -> str:
        """Never show token values."""
        return (
            f"TokenSet(realm={self.realm!r}, access_expires_at={self.access_expires_at}, "
            f"refresh_expires_at={self.refresh_expires_at}, hard_expires_at={self.hard_expires_at})"
        )

    __str__ = __repr__

    def to_json(self) -> str:
        """Serialise (for encryption only)."""
        return json.dumps(
            {
                "realm": self.realm,
                "access_token": self.access_token,
                "access_expires_at": self.access_expires_at.isoformat(),
                "refresh_token": self.refresh_token,
                "refresh_expires_at": _iso(self.refresh_expires_at),
                "hard_expires_at": _iso(self.hard_expires_at),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        """Deserialise."""
        data = json.loads(text)
        return cls(
            realm=data["realm"],
            access_token=data["access_token"],
            access_expires_at=datetime.fromisoformat(data["access_expires_at"]),
            refresh_token=data["refresh_token"],
            refresh_expires_at=_from_iso(data.get("refresh_expires_at")),
            hard_expires_at=_from_iso(data.get("hard_expires_at")),
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# --- the key ------------------------------------------------------------------------------------


def key_from_text(text: str) -> bytes:
    """32 key bytes from FLIGHTLEDGER_SECRET_KEY (urlsafe base64 of 32 bytes, or a passphrase)."""
    value = text.strip()
    if not value:
        raise VaultError(f"{KEY_ENV} is empty")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 32 and len(value) in (43, 44):
        return raw
    return hashlib.scrypt(value.encode(), salt=_SALT, n=2**14, r=8, p=1, dklen=32)


def new_key_text() -> str:
    """A fresh key as urlsafe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def default_key_file(db: DatabaseUrl) -> Path:
    """``.flightledger/secret.key`` beside the SQLite database (or the working directory)."""
    base = Path.cwd()
    if not db.is_postgres and not db.path.startswith("file:"):
        base = Path(db.path).expanduser().resolve().parent
    return base / ".flightledger" / KEY_FILE_NAME


def load_secret_key(env: Mapping[str, str], key_file: Path | None, create: bool) -> bytes:
    """The vault key: FLIGHTLEDGER_SECRET_KEY, else the key file (created 0600 when create)."""
    text = env.get(KEY_ENV, "")
    if text.strip():
        return key_from_text(text)
    if key_file is not None and key_file.is_file():
        return key_from_text(key_file.read_text())
    if create and key_file is not None:
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = new_key_text()
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        return key_from_text(value)
    where = f" and no key file at {key_file}" if key_file is not None else ""
    raise VaultError(
        f"{KEY_ENV} is not set{where}: set it to a urlsafe base64 32-byte key "
        '(python -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())")'
        " or any passphrase"
    )


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


class TokenVault:
    """Encrypted secrets of every school in the log's database."""

    def __init__(self, db: DatabaseUrl, key: bytes) -> None:
        if len(key) != 32:
            raise VaultError("the vault key must be 32 bytes")
        self.db = db
        self._aead = AESGCM(key)
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._create_table()

    # encryption
    def _seal(self, school: str, name: str, plaintext: str) -> bytes:
        return seal(self._aead, school, name, plaintext)

    def _open(self, school: str, name: str, blob: bytes) -> str:
        return unseal(self._aead, school, name, blob)

    # storage
    @contextmanager
    def _connect(self) -> Iterator[Any]:
        if self.db.is_postgres:
            import psycopg

            conn: Any = psycopg.connect(self.db.psycopg_conninfo(), connect_timeout=10)
            try:
                conn.execute(f'SET search_path TO "{self.db.schema}"')
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                conn.close()
        else:
            uri = self.db.path.startswith("file:")
            conn = sqlite3.connect(self.db.path, uri=uri, timeout=30, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                conn.close()

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.db.is_postgres else text

    def _create_table(self) -> None:
        blob = "BYTEA" if self.db.is_postgres else "BLOB"
        with setup_lock(self.db), self._connect() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (school TEXT NOT NULL, name TEXT NOT NULL, "
                f"blob {blob} NOT NULL, expires_at TEXT, updated_at TEXT NOT NULL, "
                "PRIMARY KEY (school, name))"
            )

    def _put(self, school: str, name: str, plaintext: str, expires_at: datetime | None) -> None:
        blob = self._seal(school, name, plaintext)
        now = datetime.now(UTC).isoformat()
        with self._connect() as conn:
            conn.execute(
                self._sql(
                    f"INSERT INTO {TABLE} (school, name, blob, expires_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (school, name) DO UPDATE SET "
                    "blob = EXCLUDED.blob, expires_at = EXCLUDED.expires_at, "
                    "updated_at = EXCLUDED.updated_at"
                ),
                (school, name, blob, _iso(expires_at), now),
            )

    def _get(self, school: str, name: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute(
                self._sql(f"SELECT blob FROM {TABLE} WHERE school = ? AND name = ?"),
                (school, name),
            ).fetchone()
        return None if row is None else self._open(school, name, row[0])

    def _delete(self, school: str, name: str) -> bool:
        with self._connect() as conn:
            cursor = conn.execute(
                self._sql(f"DELETE FROM {TABLE} WHERE school = ? AND name = ?"), (school, name)
            )
            return bool(cursor.rowcount)

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
        return self._delete(school, TOKENS)

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
        with self._connect() as conn:
            row = conn.execute(
                self._sql(f"DELETE FROM {TABLE} WHERE school = ? AND name = ? RETURNING blob"),
                (school, name),
            ).fetchone()
        if row is None:
            return False
        expires = datetime.fromisoformat(self._open(school, name, row[0]))
        return now < expires

    # per-realm refresh lock
    @contextmanager
    def refresh_lock(self, school: str) -> Iterator[None]:
        """Only one refresh per school at a time, across threads and processes.

        A thread lock plus the database's process_lock (pg_advisory_lock on PostgreSQL, a flock
        beside a SQLite file), so the dashboard and the worker never spend the same rotating
        refresh token twice.
        """
        with self._lock:
            lock = self._locks.setdefault(school, threading.Lock())
        with lock, process_lock(self.db, f"refresh-{school}"):
            yield

    def all_rows(self) -> list[tuple[str, str, bytes]]:
        """Every (school, name, blob) row, for inspection in tests."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT school, name, blob FROM {TABLE}").fetchall()
        return [(r[0], r[1], bytes(r[2])) for r in rows]
