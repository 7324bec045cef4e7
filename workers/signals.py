"""SIGTERM and SIGINT stop a long-running command (`worker`, `simulator`) through an Event."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_STOP = b"s"
_DONE = b"d"


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` while the block runs; the old handlers come back after.

    The handler never calls `stop.set()` itself. Python runs a handler in the main thread
    between two bytecodes; when that thread is inside `stop.wait()` at the moment it holds the
    Event's lock, `set()` waits for that lock forever and the command hangs on SIGTERM. The
    handler writes one byte to a pipe instead (a system call, no Python lock), and a small
    thread reads it and sets `stop`.

    The handlers are installed on entry, before the command says it is ready: a command started
    with SIGINT ignored (a script's background job) would otherwise drop a Ctrl-C sent as soon
    as it printed its URL.

    Restoring matters when the command runs inside another program (tests, an embedding
    service): a handler left behind would keep that program's children alive on SIGTERM.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal.signal works in the main thread only; the caller sets stop itself
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # a flood of signals must not block the handler

    def handle(_signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):  # a full pipe already holds a stop
            os.write(write_fd, _STOP)

    def relay() -> None:
        while os.read(read_fd, 1) == _STOP:
            stop.set()

    relay_thread = threading.Thread(target=relay, name="signal-relay", daemon=True)
    relay_thread.start()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    try:
        for sig in signals:
            signal.signal(sig, handle)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.set_blocking(write_fd, True)
        os.write(write_fd, _DONE)
        relay_thread.join()
        os.close(write_fd)
        os.close(read_fd)
