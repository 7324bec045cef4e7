"""Who may push for a school: one worker per realm at a time.

PostgreSQL: a session-level ``pg_try_advisory_lock`` per school, held on the worker's lock
connection (one per worker, autocommit) while a pass (or a recovery) runs, and kept between
passes while the worker says so (``hold``: its realm's rate budget is busy); a worker that
dies closes its connection, the server releases its locks, and another worker takes the school
on its next scan. The worker's pass threads share that connection and exclude each other in
the process (the thread that took a school owns it until it releases it). The key is derived
from the database, schema and school, so test schemas never collide.

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


PARALLEL_PASSES = 16  # PostgreSQL: passes of different schools one worker may run at once.
# Each pass thread uses one of the ledger's and the view's pooled connections while it reads or
# writes (the worker's advisory locks share one connection, the vault another). At 8 threads
# with a lock connection each, four workers exceeded PostgreSQL's default max_connections of
# 100 ("too many clients") and their passes stopped with gateway_unavailable.


KEPT = 0  # the owner of a school kept between passes (no thread has ident 0)


class PostgresRealmLocks:
    """A worker's advisory locks, all on one connection of its own.

    Advisory locks belong to a session, and a session may take its own lock again, so the
    worker's threads exclude each other here: a school is owned by the thread that took it
    (its re-entrant calls return True, another thread's False) until that thread releases it.
    The threads take turns on the connection (one short statement each). A connection that died
    is replaced: the server released its locks with the session, and an owner's later release
    unlocks nothing on the new one.
    """

    parallel_passes = PARALLEL_PASSES

    def __init__(self, db: DatabaseUrl) -> None:
        self.db = db
        self._guard = threading.Lock()
        self._conn: Any = None
        self._generation = 0  # which connection the locks were taken on
        self._owners: dict[str, tuple[int, int]] = {}  # school -> (thread, generation)

    @property
    def kept(self) -> set[str]:
        """The schools this worker keeps between passes (``hold``), on its live connection."""
        with self._guard:
            return {
                school
                for school, (thread, generation) in self._owners.items()
                if thread == KEPT and generation == self._generation
            }

    @property
    def held(self) -> set[str]:
        """The schools this thread holds."""
        me = threading.get_ident()
        with self._guard:
            return {school for school, (thread, _) in self._owners.items() if thread == me}

    def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop()
            self._conn = psycopg.connect(
                self.db.psycopg_conninfo(),
                autocommit=True,
                connect_timeout=10,
                application_name=f"flightledger worker {os.getpid()}",  # whose locks these are
            )
        return self._conn

    def try_acquire(self, school: str) -> bool:
        """pg_try_advisory_lock for the school (re-entrant calls return True once held)."""
        import psycopg

        me = threading.get_ident()
        with self._guard:
            owner = self._owners.get(school)
            if owner is not None and owner[0] == KEPT:
                conn = self._conn
                if owner[1] == self._generation and conn and not (conn.closed or conn.broken):
                    self._owners[school] = (me, owner[1])  # kept since the last pass: still ours
                    return True
                del self._owners[school]  # kept on a connection that died: take it again
                owner = None
            if owner is not None:
                return owner[0] == me
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
                self._owners[school] = (me, self._generation)
                return True
            return False

    def hold(self, school: str) -> None:
        """Keep the school after the pass, by the thread that holds it: no other worker takes it
        meanwhile, and any thread of this worker may take it again (or ``release`` it)."""
        with self._guard:
            owner = self._owners.get(school)
            if owner is not None and owner[0] == threading.get_ident():
                self._owners[school] = (KEPT, owner[1])

    def release(self, school: str) -> None:
        """pg_advisory_unlock for the school, by the thread that holds it (any thread, for a
        school kept between passes)."""
        import psycopg

        with self._guard:
            owner = self._owners.get(school)
            if owner is None or owner[0] not in (threading.get_ident(), KEPT):
                return
            del self._owners[school]
            if owner[1] != self._generation or self._conn is None:
                return  # taken on a connection that died: the server released it with it
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(self.db, school),))
            except psycopg.OperationalError:
                self._drop()  # the server releases every lock with the session

    def _drop(self) -> None:
        """Forget the connection (the caller holds the guard); owners stay owners in-process
        until they release, so no other thread of this worker takes their schools meanwhile."""
        conn, self._conn = self._conn, None
        self._generation += 1
        if conn is not None:
            _close_quietly(conn)

    def close(self) -> None:
        """Close the connection: the server releases every lock."""
        with self._guard:
            self._drop()
            self._owners.clear()


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

    @property
    def kept(self) -> set[str]:
        """None: the file lock is the process's, whatever its passes."""
        return set()

    def hold(self, school: str) -> None:
        """Nothing to keep: the file lock is held for the process's life."""

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
