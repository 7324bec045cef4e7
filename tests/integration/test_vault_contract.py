"""The token vault's contract, run against every backend (SqliteTokenVault, PostgresTokenVault).

As eventsourcing's recorder test cases: an abstract class with one `create_vault()` hook (and
`unreachable_vault()` for the error boundary), and one short subclass per backend.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from adapters.persistence import ensure_schema, parse_database_url
from adapters.vault import TokenVault, VaultError
from adapters.vault_postgres import PostgresTokenVault
from adapters.vault_sqlite import SqliteTokenVault
from domain.ports import FixedClock, StoreUnavailable, TokenSet
from workers.qbo import token_vault

KEY = os.urandom(32)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKENS = TokenSet(
    realm="9130",
    access_token="access-SECRET-1",
    access_expires_at=NOW + timedelta(hours=1),
    refresh_token="refresh-SECRET-1",
    refresh_expires_at=NOW + timedelta(days=100),
)


class VaultContract:
    """What every TokenVault backend does; subclasses say how to make one."""

    url: str

    def create_vault(self, key: bytes = KEY) -> TokenVault:
        """A vault on this backend's test database (the same database on every call)."""
        db = parse_database_url(self.url)
        ensure_schema(db)
        return token_vault(db, key, FixedClock(NOW))

    def unreachable_vault(self) -> TokenVault:
        """A vault whose database cannot be used (constructing it must fail)."""
        raise NotImplementedError

    def test_tokens_round_trip_replace_and_delete(self) -> None:
        """A token set is stored, replaced as a whole, read back equal, and forgotten once."""
        vault = self.create_vault()
        assert vault.get_tokens("north") is None
        vault.put_tokens("north", TOKENS)
        rotated = TokenSet("9130", "access-2", NOW, "refresh-2", None, NOW + timedelta(days=5))
        vault.put_tokens("north", rotated)
        assert self.create_vault().get_tokens("north") == rotated
        assert vault.get_tokens("south") is None
        assert vault.delete_tokens("north") is True
        assert vault.delete_tokens("north") is False
        assert vault.get_tokens("north") is None

    def test_secrets_are_stored_sealed(self) -> None:
        """No stored row holds a token or secret in clear text."""
        vault = self.create_vault()
        vault.put_tokens("north", TOKENS)
        vault.put_secret("north", "client_secret", "client-SECRET-9")
        assert vault.get_secret("north", "client_secret") == "client-SECRET-9"
        assert vault.get_secret("north", "other") is None
        blobs = b"".join(blob for _, _, blob in vault.all_rows())
        for secret in (b"access-SECRET-1", b"refresh-SECRET-1", b"client-SECRET-9"):
            assert secret not in blobs

    def test_a_wrong_key_is_a_vault_error(self) -> None:
        """Another key cannot read the entries: VaultError naming the entry, no secret."""
        self.create_vault().put_tokens("north", TOKENS)
        with pytest.raises(VaultError, match="cannot be decrypted") as refused:
            self.create_vault(os.urandom(32)).get_tokens("north")
        assert "access-SECRET" not in str(refused.value)
        assert "refresh-SECRET" not in str(refused.value)
        assert not isinstance(refused.value, StoreUnavailable)  # the school's to fix: no retry

    def test_an_oauth_state_is_consumed_once_and_expires(self) -> None:
        """consume_state is True once for a live state, False after it, for unknown or expired."""
        vault = self.create_vault()
        vault.put_state("north", "s-1", ttl=timedelta(minutes=10), now=NOW)
        vault.put_state("north", "s-2", ttl=timedelta(minutes=10), now=NOW)
        assert vault.consume_state("north", "s-1", now=NOW + timedelta(minutes=1)) is True
        assert vault.consume_state("north", "s-1", now=NOW + timedelta(minutes=1)) is False
        assert vault.consume_state("south", "s-2", now=NOW) is False
        assert vault.consume_state("north", "s-2", now=NOW + timedelta(minutes=11)) is False
        assert vault.consume_state("north", "never", now=NOW) is False

    def test_driver_errors_become_vault_errors(self) -> None:
        """An unusable database is a VaultError, never a sqlite3 / psycopg exception, and a
        StoreUnavailable: the push pass tries again instead of calling the school disconnected."""
        with pytest.raises(VaultError, match="vault database") as failed:
            self.unreachable_vault()
        assert isinstance(failed.value, StoreUnavailable)

    def test_refresh_locks_are_per_school(self) -> None:
        """Two schools' refresh locks are independent (each taken while the other is held)."""
        vault = self.create_vault()
        with vault.refresh_lock("north"), vault.refresh_lock("south"):
            vault.put_tokens("north", TOKENS)
        assert vault.get_tokens("north") == TOKENS


class TestSqliteTokenVault(VaultContract):
    """The contract on a SQLite file."""

    @pytest.fixture(autouse=True)
    def _database(self, sqlite_url: str) -> None:
        self.url = sqlite_url

    def test_the_backend_is_sqlite(self) -> None:
        """token_vault picks SqliteTokenVault for a SQLite URL."""
        assert isinstance(self.create_vault(), SqliteTokenVault)

    def unreachable_vault(self) -> TokenVault:
        """A SQLite "database" file that is not a database (sqlite3.DatabaseError)."""
        path = Path(parse_database_url(self.url).path).with_name("garbage.db")
        path.write_bytes(b"this is not a SQLite database, just bytes " * 100)
        return SqliteTokenVault(parse_database_url(f"sqlite:///{path}"), KEY)


class TestPostgresTokenVault(VaultContract):
    """The contract on a PostgreSQL schema of its own."""

    @pytest.fixture(autouse=True)
    def _database(self, pg_url: str) -> None:
        self.url = pg_url

    def test_the_backend_is_postgres(self) -> None:
        """token_vault picks PostgresTokenVault for a PostgreSQL URL."""
        assert isinstance(self.create_vault(), PostgresTokenVault)

    @staticmethod
    def backend_pid(vault: TokenVault) -> int:
        """The server process that runs the vault's next statement."""
        return int(vault._execute("SELECT pg_backend_pid()")[0][0])

    def test_statements_share_one_kept_connection(self) -> None:
        """Reads and writes of one vault, from many threads, run on one connection."""
        vault = self.create_vault()
        vault.put_tokens("north", TOKENS)
        first = self.backend_pid(vault)

        def read(_: int) -> TokenSet | None:
            return vault.get_tokens("north")

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(read, range(200)))
        assert answers == [TOKENS] * 200
        vault.put_secret("north", "client_secret", "s")
        assert self.backend_pid(vault) == first
        vault.close()
        assert self.backend_pid(vault) != first  # used after close: a new connection

    def test_a_connection_the_server_closed_is_replaced(self) -> None:
        """The kept connection killed by the server (restart, idle timeout): the next read
        runs on a new connection and answers, no error."""
        vault = self.create_vault()
        vault.put_tokens("north", TOKENS)
        killed = self.backend_pid(vault)
        db = parse_database_url(self.url)
        with psycopg.connect(db.psycopg_conninfo(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (killed,))
        assert vault.get_tokens("north") == TOKENS
        assert self.backend_pid(vault) != killed

    def unreachable_vault(self) -> TokenVault:
        """A PostgreSQL server on a port nobody listens on."""
        db = parse_database_url("postgresql://postgres@127.0.0.1:1/test")
        return PostgresTokenVault(db, KEY)
