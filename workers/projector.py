"""The projector: keeps the financial-event view (and the audit chain) caught up with the log."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import structlog
from eventsourcing.persistence import Notification, PersistenceError

from adapters.persistence import log_channel
from domain.application import FlightLedger
from projections import audit
from projections.financial_events import (
    ChangeDecoder,
    InMemoryFinancialEventView,
    UnreadableEvent,
    decode_events,
)
from projections.view import ProjectedView, TrackingConflict

log = structlog.get_logger(__name__)

DEFAULT_BATCH_SIZE = 5000
REBUILD_BATCH_SIZE = 20_000  # a rebuild reads the whole log: fewer, larger transactions
MAX_CONFLICT_RETRIES = 10  # a batch superseded this many times in a row stops the projector
FALLBACK_POLL_SECONDS = 1.0  # PostgreSQL: look anyway this often, in case a NOTIFY was missed
MAX_BACKOFF_SECONDS = 5.0


def iter_notifications(
    ledger: FlightLedger, start: int = 1, page: int = DEFAULT_BATCH_SIZE
) -> Iterator[Sequence[Notification]]:
    """The stored log in pages from `start`, ascending (memory-bounded)."""
    position = start
    while True:
        notifications = ledger.recorder.select_notifications(start=position, limit=page)
        if not notifications:
            return
        yield notifications
        position = notifications[-1].id + 1


def decode_changes(ledger: FlightLedger, notifications: Sequence[Notification]) -> list[Any]:
    """(position, domain event) for the financial events among the notifications.

    Raises UnreadableEvent ("log position N cannot be read: ...") for an undecodable event.
    """
    return decode_events(ledger.mapper, notifications)


class Projector:
    """Applies the log to a view in batches: one transaction and one tracking position each."""

    def __init__(
        self,
        ledger: FlightLedger,
        view: ProjectedView,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        channel: str | None = None,
    ) -> None:
        self.ledger = ledger
        self.view = view
        self.batch_size = batch_size
        self.channel = channel or log_channel(ledger.recorder)
        self.listener_pid: int | None = None
        self.reconnects = 0
        self.decoder = ChangeDecoder(ledger.mapper)

    def run_batch(self, batch_size: int | None = None) -> int:
        """Apply the next batch; returns the number of log events it covered (0: caught up).

        A batch superseded by another projector (TrackingConflict) is re-read from the new
        position, at most MAX_CONFLICT_RETRIES times; then the conflict is raised. A stored event
        that cannot be decoded raises UnreadableEvent and nothing of its batch is written.
        """
        for attempt in range(1, MAX_CONFLICT_RETRIES + 1):
            previous = self.view.max_tracking_id()
            notifications = self.ledger.recorder.select_notifications(
                start=previous + 1, limit=batch_size or self.batch_size
            )
            if not notifications:
                return 0
            try:
                changes = self.decoder.decode(notifications)
            except UnreadableEvent as exc:
                log.error("projector_stopped", position=exc.position, reason=str(exc))
                raise
            try:
                self.view.apply_batch(
                    changes, notifications, previous=previous, position=notifications[-1].id
                )
            except TrackingConflict:
                log.info("projector_batch_superseded", previous=previous, attempt=attempt)
                continue
            return len(notifications)
        msg = (
            f"the view kept moving under this projector: {MAX_CONFLICT_RETRIES} batches in a "
            "row were superseded"
        )
        raise TrackingConflict(msg)

    def catch_up(self, batch_size: int | None = None) -> int:
        """Apply everything up to the end of the log; returns the number of log events applied.

        Batch by batch, each in its own short transaction, even into an empty view: a worker
        or `serve` catches up beside live writers (the API's POSTs, `record`), and on SQLite a
        from-empty load's one transaction would hold the file's write lock for the whole log.
        The one-transaction load is `rebuild`'s, an operator's explicit step. A batch shorter
        than asked for reached the end of the log: no query to find it empty follows.
        """
        size = batch_size or self.batch_size
        total = 0
        while True:
            applied = self.run_batch(size)
            total += applied
            if applied < size:
                return total

    def rebuild(self, batch_size: int | None = None) -> int:
        """Empty the view (rows and tracking) and load it again from position 0, in one
        transaction (readers see the old view until it commits; on SQLite writers of the same
        file wait for it, on PostgreSQL readers of the rows wait for the rebuilt indexes);
        then catch up as usual."""
        size = batch_size or max(self.batch_size, REBUILD_BATCH_SIZE)
        applied = self._load(size, replace=True)
        applied += self.catch_up(size)
        log.info("view_rebuilt", events=applied)
        return applied

    def _load(self, batch_size: int, *, replace: bool) -> int:
        """The view's from-empty load over the whole log, in batches of `batch_size`; returns
        the number of log events it covered (0 when another projector filled the view first).

        An unreadable event ends the load at the batch before it (committed, as batch by batch
        would have), then raises UnreadableEvent.
        """
        covered = 0
        failure: UnreadableEvent | None = None

        def batches() -> Iterator[tuple[list[Any], Sequence[Notification]]]:
            nonlocal covered, failure
            position = 0
            while True:
                notifications = self.ledger.recorder.select_notifications(
                    start=position + 1, limit=batch_size
                )
                if not notifications:
                    return
                try:
                    changes = self.decoder.decode(notifications)
                except UnreadableEvent as exc:
                    log.error("projector_stopped", position=exc.position, reason=str(exc))
                    failure = exc
                    return
                yield changes, notifications
                covered += len(notifications)
                position = notifications[-1].id

        try:
            self.view.load(batches(), replace=replace)
        except TrackingConflict:
            log.info("projector_load_superseded")
            return 0
        if failure is not None:
            raise failure
        return covered

    def follow(
        self,
        stop: threading.Event,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """Keep the view caught up until `stop` is set: LISTEN/NOTIFY on PostgreSQL (supervised,
        reconnecting from the tracking position), polling on SQLite."""
        backoff = 0.1
        while not stop.is_set():
            try:
                listener = self.view.listen(self.channel)
            except PersistenceError as exc:
                log.warning("projector_listen_failed", error=str(exc), retry_in=backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            self.listener_pid = listener.pid
            try:
                self._drain(on_batch)
                backoff = 0.1
                while not stop.is_set():
                    listener.wait(FALLBACK_POLL_SECONDS)
                    if stop.is_set():
                        break
                    self._drain(on_batch)
            except PersistenceError as exc:
                self.reconnects += 1
                log.warning(
                    "projector_reconnected",
                    error=str(exc),
                    position=self._position(),
                    retry_in=backoff,
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            finally:
                self.listener_pid = None
                try:
                    listener.close()
                except Exception as exc:  # closing a dead connection must not stop the loop
                    log.debug("projector_listener_close_failed", error=str(exc))

    def _drain(self, on_batch: Callable[[int], None] | None) -> None:
        while True:
            applied = self.run_batch()
            if not applied:
                return
            if on_batch is not None:
                on_batch(applied)

    def _position(self) -> int | None:
        try:
            return self.view.max_tracking_id()
        except PersistenceError:
            return None


def view_as_of(ledger: FlightLedger, as_of: datetime) -> InMemoryFinancialEventView:
    """The view as it was at `as_of`: every event with timestamp <= as_of, from the log."""
    view = InMemoryFinancialEventView()
    for notifications in iter_notifications(ledger):
        for position, event in decode_changes(ledger, notifications):
            if event.timestamp <= as_of:
                view.apply(position, event)
        view.advance(notifications[-1].id)
    return view


def verify_audit_chain(ledger: FlightLedger, view: ProjectedView) -> audit.Verdict:
    """Recompute the chain over the stored log; chain positions not yet chained."""
    verifier = audit.ChainVerifier()

    def links() -> Iterator[tuple[int, bytes]]:
        start = 1
        while True:
            page = view.audit_links(start, DEFAULT_BATCH_SIZE)
            if not page:
                return
            yield from page
            start = page[-1][0] + 1

    def notifications() -> Iterator[Notification]:
        for page in iter_notifications(ledger):
            yield from page

    verifier.check(notifications(), links())
    if not verifier.ok:
        log.warning("audit_chain_broken", position=verifier.first_bad)
        return verifier.verdict()
    for page in iter_notifications(ledger, start=verifier.position + 1):
        links_to_store = verifier.extend(page)
        if links_to_store:
            try:
                view.append_audit_links(links_to_store)
            except PersistenceError as exc:  # a read-only copy: checked, not stored
                log.info("audit_links_not_stored", reason=str(exc))
    return verifier.verdict()
