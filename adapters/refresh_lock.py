"""RefreshLocks: one refresh of a school's rotating refresh token at a time, across threads and
processes (the worker's pass threads, the dashboard, the CLI).

A thread lock per school plus the database's process lock (pg_advisory_lock on PostgreSQL, a
flock beside a SQLite file: adapters.persistence.process_lock). The vault hands it out with the
tokens it guards (`TokenVault.refresh_lock`); nothing here reads or writes a token.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from adapters.persistence import DatabaseUrl, process_lock


class RefreshLocks:
    """Per-school refresh locks of one database."""

    def __init__(self, db: DatabaseUrl, driver_errors: tuple[type[Exception], ...]) -> None:
        self.db = db
        self.driver_errors = driver_errors  # the backend's, turned into `refused` below
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextmanager
    def hold(self, school: str, refused: type[Exception]) -> Iterator[None]:
        """Hold the school's lock; a database that refuses the process lock raises `refused`
        (the caller's error type, with the driver's message and no secret)."""
        with self._guard:
            lock = self._locks.setdefault(school, threading.Lock())
        with lock, ExitStack() as held:
            try:
                held.enter_context(process_lock(self.db, f"refresh-{school}"))
            except self.driver_errors as exc:
                raise refused(f"the vault database refused the refresh lock: {exc}") from None
            yield
