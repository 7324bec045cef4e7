"""The audit hash chain over the stored log: each notification chained to the one before."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

GENESIS = hashlib.sha256(b"flightledger audit chain v1").digest()
_SEP = b"\x1f"


class StoredNotification(Protocol):
    """What the chain reads of a stored notification (eventsourcing's Notification fits)."""

    @property
    def id(self) -> int: ...

    @property
    def originator_id(self) -> object: ...

    @property
    def originator_version(self) -> int: ...

    @property
    def topic(self) -> str: ...

    @property
    def state(self) -> bytes: ...


def chain_hash(previous: bytes, notification: StoredNotification) -> bytes:
    """sha256(previous hash + notification id + originator id + version + topic + state).

    The parts are joined with a separator and hashed in one call (the same digest as feeding
    them to sha256 one after another).
    """
    return hashlib.sha256(
        b"".join(
            (
                previous,
                _SEP,
                str(notification.id).encode(),
                _SEP,
                str(notification.originator_id).encode(),
                _SEP,
                str(notification.originator_version).encode(),
                _SEP,
                notification.topic.encode(),
                _SEP,
                bytes(notification.state),
            )
        )
    ).digest()


def extend(
    head_position: int, head_hash: bytes, notifications: Sequence[StoredNotification]
) -> list[tuple[int, bytes]]:
    """Chain links for the notifications after the head (those at or before it are skipped)."""
    links: list[tuple[int, bytes]] = []
    previous = head_hash
    for notification in notifications:
        if notification.id <= head_position:
            continue
        previous = chain_hash(previous, notification)
        links.append((notification.id, previous))
    return links


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking the stored log against the chain."""

    ok: bool
    events: int  # notifications checked
    head: str  # hex of the last good link ("" when the log is empty)
    head_position: int
    first_bad_position: int | None = None
    message: str = ""


class ChainVerifier:
    """Walks notifications and stored links in position order; stops at the first mismatch."""

    def __init__(self) -> None:
        self.previous = GENESIS
        self.position = 0
        self.events = 0
        self.first_bad: int | None = None
        self.message = ""

    @property
    def ok(self) -> bool:
        """No mismatch found so far."""
        return self.first_bad is None

    def check(
        self,
        notifications: Iterable[StoredNotification],
        links: Iterable[tuple[int, bytes]],
    ) -> None:
        """Check the chained part of the log; stops at the chain's end or the first mismatch.

        Both inputs are in ascending position order. A link whose notification is missing, a
        notification missing between links, or a hash mismatch marks the first bad position.
        Notifications past the last link are left alone (the caller chains them from the head).
        """
        link_iter = iter(links)
        pending = next(link_iter, None)
        for notification in notifications:
            if pending is None:
                return
            if pending[0] < notification.id:
                self._bad(pending[0], "a chained event is missing from the log")
                return
            if pending[0] > notification.id:
                self._bad(notification.id, "an event appears in the log that was never chained")
                return
            expected = chain_hash(self.previous, notification)
            if expected != pending[1]:
                self._bad(
                    notification.id,
                    "the stored bytes of this event no longer match the audit chain",
                )
                return
            self.previous = expected
            self.position = notification.id
            self.events += 1
            pending = next(link_iter, None)
        if pending is not None:
            self._bad(pending[0], "a chained event is missing from the log")

    def extend(self, notifications: Sequence[StoredNotification]) -> list[tuple[int, bytes]]:
        """Chain notifications past the verified head; they count as checked."""
        links = extend(self.position, self.previous, notifications)
        if links:
            self.position, self.previous = links[-1]
            self.events += len(links)
        return links

    def _bad(self, position: int, message: str) -> None:
        self.first_bad = position
        self.message = f"position {position}: {message}"

    def verdict(self) -> Verdict:
        """The result so far."""
        return Verdict(
            ok=self.ok,
            events=self.events,
            head=self.previous.hex() if self.position else "",
            head_position=self.position,
            first_bad_position=self.first_bad,
            message=self.message,
        )
