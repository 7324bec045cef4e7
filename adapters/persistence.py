"""Persistence from one URL: sqlite:///path or postgresql://user:pass@host:port/db?schema=NAME."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresDatastore
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_DB_URL = "sqlite:///./flightledger.db"
SQLITE_FACTORY = "adapters.eventstore_sqlite:SQLiteBulkFactory"
POSTGRES_FACTORY = "adapters.eventstore_postgres:PostgresBulkFactory"
_SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@runtime_checkable
class PooledConnections(Protocol):
    """A store that reads and writes through a pool of connections (the PostgreSQL ones)."""

    def widen_pool(self, size: int) -> None:
        """Let the pool hold at least `size` connections (threads of one worker share it)."""
        ...


def widen_datastore_pool(datastore: PostgresDatastore, size: int) -> None:
    """Resize a PostgreSQL datastore's pool to hold at least `size` connections."""
    pool = datastore.pool
    if pool.max_size < size:
        pool.resize(pool.min_size, size)


SQLITE_CHANNEL = "flightledger"  # SQLite has no NOTIFY: a name for the polling listener


def log_channel(recorder: object) -> str:
    """The channel on which the log's writes wake listeners (PostgreSQL NOTIFY; the library
    names it after the events table)."""
    from eventsourcing.postgres import PostgresApplicationRecorder

    if isinstance(recorder, PostgresApplicationRecorder):
        return str(recorder.channel_name)
    return SQLITE_CHANNEL


class DatabaseUrlError(ValueError):
    """The database URL cannot be used; the message says why."""


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed FLIGHTLEDGER_DB URL."""

    url: str
    backend: str  # "sqlite" | "postgres"
    path: str = ""  # sqlite file path (or shared-memory URI)
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""
    schema: str = ""

    @property
    def is_postgres(self) -> bool:
        """True for PostgreSQL."""
        return self.backend == "postgres"

    @property
    def read_only(self) -> bool:
        """A SQLite file opened read-only (?mode=ro, or a file this process may not write)."""
        return self.backend == "sqlite" and self.path.endswith("?mode=ro")

    def redacted(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        raw = urlsplit(self.url).password if self.is_postgres else None  # as written (%-quoted)
        if raw:
            return self.url.replace(f":{raw}@", ":***@", 1)
        return self.url

    def psycopg_conninfo(self) -> str:
        """A libpq connection string (PostgreSQL only)."""
        parts = [f"host={self.host}", f"port={self.port}", f"dbname={self.dbname}"]
        if self.user:
            parts.append(f"user={self.user}")
        if self.password:
            parts.append(f"password={self.password}")
        return " ".join(parts)

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's environment for this URL (with the bulk-write adapters)."""
        if not self.is_postgres:
            return {
                "PERSISTENCE_MODULE": SQLITE_FACTORY,
                "SQLITE_DBNAME": self.path,
            }
        return {
            "PERSISTENCE_MODULE": POSTGRES_FACTORY,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_CONNECT_TIMEOUT": "10",
        }


def parse_database_url(url: str) -> DatabaseUrl:
    """Parse and check a database URL; errors name the part that is wrong."""
    if not url:
        raise DatabaseUrlError("db: an empty database URL was given")
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:") :]
        if not rest.startswith("///"):
            raise DatabaseUrlError("db: SQLite URLs look like sqlite:///path/to/file.db")
        path, _, query_text = rest[3:].partition("?")
        if not path:
            raise DatabaseUrlError("db: the SQLite URL has no file path")
        options = parse_qs(query_text)
        unknown_options = sorted(set(options) - {"mode"})
        if unknown_options or options.get("mode", ["ro"]) != ["ro"]:
            raise DatabaseUrlError("db: the only SQLite URL option is ?mode=ro (read-only)")
        if options or (path != ":memory:" and _read_only_file(path)):
            resolved = Path(path).expanduser().resolve()
            if not resolved.is_file():
                raise DatabaseUrlError(f"db: no SQLite file {resolved} to read")
            return DatabaseUrl(url=url, backend="sqlite", path=f"file:{resolved}?mode=ro")
        if path == ":memory:":
            import uuid

            path = f"file:flightledger-{uuid.uuid4().hex}?mode=memory&cache=shared"
        else:
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir():
                raise DatabaseUrlError(f"db: the directory {parent} does not exist")
            path = str(Path(path).expanduser())
        return DatabaseUrl(url=url, backend="sqlite", path=path)
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise DatabaseUrlError(
            f"db: unsupported scheme {parts.scheme!r}: use sqlite:///FILE or postgresql://..."
        )
    dbname = parts.path.lstrip("/")
    if not dbname:
        raise DatabaseUrlError("db: the PostgreSQL URL names no database (…/dbname)")
    query = parse_qs(parts.query)
    schema = (query.get("schema") or [""])[0]
    if schema and not _SCHEMA_PATTERN.match(schema):
        raise DatabaseUrlError(
            "db: schema must be lowercase letters, digits and '_' (at most 63 characters)"
        )
    unknown = sorted(set(query) - {"schema"})
    if unknown:
        raise DatabaseUrlError(f"db: unknown URL parameter {unknown[0]!r} (only schema=)")
    try:
        port = parts.port or 5432
    except ValueError:
        raise DatabaseUrlError("db: the port is not a number") from None
    return DatabaseUrl(
        url=url,
        backend="postgres",
        host=parts.hostname or "127.0.0.1",
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=dbname,
        schema=schema or "public",
    )


def _read_only_file(path: str) -> bool:
    """An existing SQLite file this process may not write (or whose folder it may not)."""
    import os

    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        return False
    return not os.access(resolved, os.W_OK) or not os.access(resolved.parent, os.W_OK)


def ensure_schema(db: DatabaseUrl) -> None:
    """Create the PostgreSQL schema if it does not exist (no-op for SQLite)."""
    if not db.is_postgres or db.schema == "public":
        return
    import psycopg
    from psycopg import sql

    # another process may create the schema at the same moment: that is fine
    with (
        psycopg.connect(db.psycopg_conninfo(), autocommit=True, connect_timeout=10) as conn,
        suppress(psycopg.errors.UniqueViolation),
    ):
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(db.schema)))


@contextmanager
def process_lock(db: DatabaseUrl, name: str) -> Iterator[None]:
    """Hold the lock `name` of this database exclusively, across processes, until exit.

    PostgreSQL: a session advisory lock keyed on the name, database and schema, on its own
    connection (released by the server if the process dies). SQLite file: an exclusive flock on
    ``<file>.<name>.lock`` (released by the OS if the process dies). In-memory SQLite lives in
    one process, so nothing is needed.
    """
    if db.is_postgres:
        import psycopg

        text = f"flightledger:{name}:{db.dbname}:{db.schema}".encode()
        key = int.from_bytes(hashlib.sha256(text).digest()[:8], "big", signed=True)
        conninfo = db.psycopg_conninfo()
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    elif db.path.startswith("file:"):
        yield
    else:
        import fcntl
        import os

        fd = os.open(f"{db.path}.{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor drops the lock


@contextmanager
def setup_lock(db: DatabaseUrl) -> Iterator[None]:
    """Serialise table creation in one PostgreSQL schema across processes (no-op for SQLite).

    Two processes creating the same tables at once make PostgreSQL fail with "tuple concurrently
    updated"; the schema's process_lock makes them take turns. SQLite serialises DDL itself.
    """
    if not db.is_postgres:
        yield
        return
    with process_lock(db, "setup"):
        yield
