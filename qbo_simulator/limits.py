"""Per-realm QBO rate limits: requests per minute and second, concurrency, batches per minute.

Sliding windows over an injectable monotonic clock. A refused request is not recorded, so
throttled requests never count against later ones.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

ThrottleReason = Literal["per_second", "per_minute", "concurrent", "batch_per_minute"]


@dataclass(frozen=True)
class Limits:
    """The four numbers QBO enforces per realm, and the length of one "minute"."""

    per_minute: int = 500
    per_second: int = 10
    concurrent: int = 10
    batch_per_minute: int = 40
    minute_seconds: float = 60.0


@dataclass
class _RealmWindow:
    minute: deque[float] = field(default_factory=deque)
    second: deque[float] = field(default_factory=deque)
    batch: deque[float] = field(default_factory=deque)
    in_flight: int = 0


class RateLimiter:
    """Admits or refuses requests per realm; thread-safe."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._realms: dict[str, _RealmWindow] = {}

    def acquire(self, realm: str, *, batch: bool = False) -> ThrottleReason | None:
        """Admit one request (holding a concurrency slot) or return why it is throttled."""
        now = self._clock()
        minute = self.limits.minute_seconds
        second = minute / 60.0
        with self._lock:
            window = self._realms.setdefault(realm, _RealmWindow())
            _expire(window.minute, now - minute)
            _expire(window.second, now - second)
            _expire(window.batch, now - minute)
            if window.in_flight >= self.limits.concurrent:
                return "concurrent"
            if len(window.second) >= self.limits.per_second:
                return "per_second"
            if len(window.minute) >= self.limits.per_minute:
                return "per_minute"
            if batch and len(window.batch) >= self.limits.batch_per_minute:
                return "batch_per_minute"
            window.minute.append(now)
            window.second.append(now)
            if batch:
                window.batch.append(now)
            window.in_flight += 1
            return None

    def release(self, realm: str) -> None:
        """Give back the concurrency slot of an admitted request."""
        with self._lock:
            window = self._realms.get(realm)
            if window is not None and window.in_flight > 0:
                window.in_flight -= 1

    def in_flight(self, realm: str) -> int:
        """Requests of a realm currently admitted and not yet released."""
        with self._lock:
            window = self._realms.get(realm)
            return 0 if window is None else window.in_flight

    def reset(self) -> None:
        """Forget all windows (in-flight counts included)."""
        with self._lock:
            self._realms.clear()


def _expire(stamps: deque[float], horizon: float) -> None:
    while stamps and stamps[0] <= horizon:
        stamps.popleft()
