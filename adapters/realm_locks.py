"""Who may push for a school: one worker per realm at a time.

PostgreSQL: a session-level ``pg_try_advisory_lock`` per school, held on a dedicated
autocommit connection only while a pass (or a recovery) runs; a worker that dies closes its
connection, the server releases its locks, and another worker takes the school on its next scan.
Advisory locks belong to a session, so every thread gets a connection of its own: a thread that
runs a school's pass takes and releases its lock there, and two threads of one worker exclude
each other as two workers do. The key is derived from the database, schema and school, so test
schemas never collide.

SQLite: one worker per database file. An exclusive ``flock`` on ``<db file>.worker.lock`` is
taken on first use and held for the life of the process (the OS drops it when the process dies);
a second worker on the same file owns nothing and waits. In-memory databases live in one
process, so their lock is always granted.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import structlog

from adapters.persistence import DatabaseUrl
from domain.ports import RealmLocks

log = structlog.get_logger(__name__)


def lock_key(db: DatabaseUrl, school: str) -> int:
    """A signed 64-bit advisory-lock key for one school of one database schema."""
    text = f"flightledger:realm:{db.dbname}:{db.schema}:{school}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)


class _Session(threading.local):
    """One thread's lock connection and the schools it holds there."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.held: set[str] = set()


PARALLEL_PASSES = 4  # PostgreSQL: passes of different schools one worker may run at once.
# Each pass thread holds a lock connection and uses one of the ledger's and the view's pooled
# connections (plus a short vault connection per token read): about 4 per thread. At 8, four
# workers exceeded PostgreSQL's default max_connections of 100 ("too many clients") and
# their passes stopped with gateway_unavailable.


class PostgresRealmLocks:
    """Advisory locks on a dedicated connection per thread (reopened, with its locks
    forgotten, if it dies)."""

    parallel_passes = PARALLEL_PASSES

    def __init__(self, db: DatabaseUrl) -> None:
        self.db = db
        self._session = _Session()
        self._guard = threading.Lock()
        self._open: list[Any] = []  # every thread's connection, closed by close()

    @property
    def held(self) -> set[str]:
        """The schools this thread holds."""
        return self._session.held

    def _connection(self) -> Any:
        import psycopg

        session = self._session
        if session.conn is None or session.conn.closed or session.conn.broken:
            session.held.clear()
            session.conn = psycopg.connect(
                self.db.psycopg_conninfo(),
                autocommit=True,
                connect_timeout=10,
                application_name=f"flightledger worker {os.getpid()}",  # whose locks these are
            )
            with self._guard:
                self._open = [c for c in self._open if not c.closed]
                self._open.append(session.conn)
        return session.conn

    def try_acquire(self, school: str) -> bool:
        """pg_try_advisory_lock for the school (re-entrant calls return True once held)."""
        if school in self.held:
            return True
        import psycopg

        try:
            row = (
                self._connection()
                .execute("SELECT pg_try_advisory_lock(%s)", (lock_key(self.db, school),))
                .fetchone()
            )
        except psycopg.OperationalError as exc:
            log.warning("realm_lock_failed", school=school, error=str(exc))
            self._drop()
            return False
        if row and row[0]:
            self.held.add(school)
            return True
        return False

    def release(self, school: str) -> None:
        """pg_advisory_unlock for the school (on this thread's connection)."""
        if school not in self.held:
            return
        self.held.discard(school)
        import psycopg

        try:
            self._connection().execute(
                "SELECT pg_advisory_unlock(%s)", (lock_key(self.db, school),)
            )
        except psycopg.OperationalError:
            self._drop()  # the server released it with the session

    def _drop(self) -> None:
        session = self._session
        session.held.clear()
        if session.conn is not None:
            _close_quietly(session.conn)
        session.conn = None

    def close(self) -> None:
        """Close every thread's connection: the server releases every lock."""
        with self._guard:
            conns, self._open = self._open, []
        for conn in conns:
            _close_quietly(conn)
        self._session.held.clear()
        self._session.conn = None


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception as exc:  # a dead connection may fail to close; locks are gone
        log.debug("realm_lock_close_failed", error=str(exc))


class SQLiteRealmLocks:
    """One worker per SQLite file: an exclusive flock held until close or death."""

    parallel_passes = 1  # one writer per file: passes run one after another

    def __init__(self, db: DatabaseUrl) -> None:
        self.db = db
        self.path = None if db.path.startswith("file:") else f"{db.path}.worker.lock"
        self._fd: int | None = None
        self._always = self.path is None

    @property
    def owned(self) -> bool:
        """This process holds the database's worker lock."""
        return self._always or self._fd is not None

    def try_acquire(self, school: str) -> bool:
        """True when this process is (or just became) the database's single worker."""
        if self.owned:
            return True
        import fcntl

        assert self.path is not None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        log.info("database_worker_lock_taken", path=self.path)
        return True

    def release(self, school: str) -> None:
        """Kept for the process's life (one worker per file)."""

    def close(self) -> None:
        """Drop the flock."""
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def open_realm_locks(db: DatabaseUrl) -> RealmLocks:
    """The ownership mechanism for the database's backend (both implement domain.ports
    RealmLocks, parallel_passes included: mypy checks it here)."""
    return PostgresRealmLocks(db) if db.is_postgres else SQLiteRealmLocks(db)
