"""stop_on_signals: SIGTERM/SIGINT set the stop Event without a lock in the signal handler."""

from __future__ import annotations

import signal
import threading

import pytest

from workers.signals import stop_on_signals


@pytest.mark.timeout(20)
def test_a_signal_while_the_main_thread_holds_the_events_lock_still_stops() -> None:
    """The signal arrives while the main thread is inside stop.wait() holding the Event's lock
    (here: holding it on purpose). A handler that called stop.set() would wait for that lock
    forever; the relay sets stop once the lock is free."""
    stop = threading.Event()
    with stop_on_signals(stop):
        held: threading.Condition = stop._cond  # type: ignore[attr-defined]
        with held:  # the lock Event.wait() holds between its checks
            signal.raise_signal(signal.SIGTERM)  # the handler runs here, in this thread
            assert not stop.is_set()
        assert stop.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_each_signal_sets_stop_and_the_old_handlers_come_back(sig: signal.Signals) -> None:
    received: list[int] = []

    def mine(signum: int, _frame: object) -> None:
        received.append(signum)

    before = {s: signal.signal(s, mine) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop = threading.Event()
        with stop_on_signals(stop):
            signal.raise_signal(sig)
            assert stop.wait(10)
            assert received == []
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is mine
        signal.raise_signal(sig)
        assert received == [sig]
        assert not [t for t in threading.enumerate() if t.name == "signal-relay"]
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_outside_the_main_thread_it_leaves_the_handlers_alone() -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    seen: list[object] = []

    def body() -> None:
        with stop_on_signals(threading.Event()):
            seen.extend(signal.getsignal(s) for s in handlers)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(10)
    assert seen == list(handlers.values())
