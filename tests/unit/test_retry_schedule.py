"""RetrySchedule: due times and realm pauses, kept apart from the engine that runs passes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from domain.ports import OutcomeKind, PushOutcome
from domain.sync import RetryPolicy
from services.retry_schedule import RetrySchedule

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class _Event:
    """The two fields the schedule keys on."""

    def __init__(self, school: str) -> None:
        self.id = uuid4()
        self.school = school


def test_due_times_and_pauses_give_the_next_due_per_school() -> None:
    """next_due is the earliest due time or pause end of the school; forget drops the rest."""
    schedule = RetrySchedule(RetryPolicy(), random.Random(1))
    a, b = _Event("north"), _Event("south")
    schedule.schedule(a, 1, NOW, floor=30)  # type: ignore[arg-type]
    schedule.due_now(b, NOW)  # type: ignore[arg-type]
    due_a = schedule.next_due("north")
    assert due_a is not None and due_a >= NOW + timedelta(seconds=30)
    assert schedule.next_due() == NOW
    schedule.pause("north", NOW + timedelta(seconds=5))
    assert schedule.next_due("north") == NOW + timedelta(seconds=5)
    assert schedule.still_paused("north", NOW) is True
    assert schedule.still_paused("north", NOW + timedelta(seconds=5)) is False
    assert schedule.paused_until("north") is None  # a pause that passed is cleared
    schedule.forget("north", keep=())
    assert schedule.next_due("north") is None and schedule.next_due("south") == NOW
    schedule.unschedule(b.id)
    assert schedule.next_due() is None


def test_outage_calls_open_the_realms_circuit_and_pause_it() -> None:
    """Five outage calls in a row open the breaker, which pauses the realm; a success closes."""
    schedule = RetrySchedule(RetryPolicy(), random.Random(1))
    down = PushOutcome(uuid4(), OutcomeKind.TRANSIENT, message="down", http_status=503)
    for _ in range(5):
        schedule.observe_call("north", [down], NOW)
    paused = schedule.paused_until("north")
    assert paused is not None and paused > NOW
    assert schedule.paused_until("south") is None
    schedule.observe_call("north", [PushOutcome(uuid4(), OutcomeKind.SYNCED, qbo_id="1")], NOW)
    assert schedule.breaker("north").failures == 0


def test_an_event_due_inside_its_realms_pause_waits_for_the_pause_to_end() -> None:
    """With the realm's circuit open, the next due time is the pause's end, not an event's past
    due time (which made the worker loop every 10 ms while QuickBooks was down)."""
    schedule = RetrySchedule(RetryPolicy(), random.Random(1))
    waiting, other = _Event("north"), _Event("south")
    schedule.due_now(waiting, NOW)  # type: ignore[arg-type]
    assert schedule.unavailable("north", NOW) is None
    down = PushOutcome(uuid4(), OutcomeKind.TRANSIENT, message="down", http_status=503)
    for _ in range(5):
        schedule.observe_call("north", [down], NOW)
    paused = schedule.paused_until("north")
    assert paused is not None and paused > NOW
    assert schedule.next_due("north") == paused
    why = schedule.unavailable("north", NOW)
    assert why is not None and "circuit is open" in why
    schedule.due_now(other, NOW)  # type: ignore[arg-type]
    assert schedule.next_due() == NOW  # another realm's event is due now
    assert schedule.unavailable("north", paused) is None  # the pause is over: the probe goes


def test_a_throttled_realm_is_unavailable_until_its_pause_ends() -> None:
    """A 429's pause (no open circuit) reads as a throttle."""
    schedule = RetrySchedule(RetryPolicy(), random.Random(1))
    schedule.pause("north", NOW + timedelta(seconds=60))
    why = schedule.unavailable("north", NOW)
    assert why is not None and "throttled" in why and "429" in why


def test_a_realm_whose_budget_was_spent_or_that_is_paused_stays_with_the_worker() -> None:
    """holds: a minute after a pass left work for the budget (wake), and while paused."""
    clock = [100.0]
    schedule = RetrySchedule(RetryPolicy(), random.Random(1), monotonic=lambda: clock[0])
    assert schedule.holds("north", NOW) is False
    schedule.wake("north", NOW, 0.2)
    clock[0] += 59.0
    assert schedule.holds("north", NOW) is True
    clock[0] += 1.0
    assert schedule.holds("north", NOW) is False
    schedule.pause("south", NOW + timedelta(seconds=60))
    assert schedule.holds("south", NOW + timedelta(seconds=59)) is True
    assert schedule.holds("south", NOW + timedelta(seconds=60)) is False
