"""The simulator's per-realm rate limiter, driven by a fake clock."""

from __future__ import annotations

from qbo_simulator.limits import Limits, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limiter(**kw: float) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(Limits(**kw), clock), clock  # type: ignore[arg-type]


def _admit(limiter: RateLimiter, n: int, realm: str = "r", batch: bool = False) -> list[str | None]:
    answers: list[str | None] = []
    for _ in range(n):
        reason = limiter.acquire(realm, batch=batch)
        answers.append(reason)
        if reason is None:
            limiter.release(realm)
    return answers


def test_eleventh_request_in_a_second_is_refused() -> None:
    """Ten requests per scaled second pass; the eleventh is refused per_second."""
    limiter, _ = _limiter()
    assert _admit(limiter, 11) == [None] * 10 + ["per_second"]


def test_next_second_admits_again() -> None:
    """After one scaled second the per-second window is open again."""
    limiter, clock = _limiter(minute_seconds=6.0)
    _admit(limiter, 10)
    clock.now += 0.1
    assert _admit(limiter, 1) == [None]


def test_minute_limit_counts_only_admitted_requests() -> None:
    """Refused requests do not use up the per-minute budget."""
    limiter, clock = _limiter(per_minute=20)
    for _ in range(2):
        assert _admit(limiter, 12).count(None) == 10
        clock.now += 1.0
    assert _admit(limiter, 1) == ["per_minute"]
    clock.now += 60.0
    assert _admit(limiter, 1) == [None]


def test_concurrency_slot_is_held_until_release() -> None:
    """The eleventh request while ten are in flight is refused; a release frees a slot."""
    limiter, _ = _limiter(per_second=100)
    for _ in range(10):
        assert limiter.acquire("r") is None
    assert limiter.acquire("r") == "concurrent"
    limiter.release("r")
    assert limiter.acquire("r") is None
    assert limiter.in_flight("r") == 10


def test_batch_limit_is_separate_and_per_realm() -> None:
    """The 41st batch in a minute is refused; plain requests and other realms still pass."""
    limiter, _ = _limiter(per_second=1000)
    assert _admit(limiter, 41, batch=True)[-1] == "batch_per_minute"
    assert _admit(limiter, 1) == [None]
    assert _admit(limiter, 1, realm="other", batch=True) == [None]
