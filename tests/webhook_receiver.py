"""A local webhook receiver for tests: keeps every request; answers from a script."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """The receiver's state: what arrived, what to answer next."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    arrived: int = 0  # requests that reached the handler (held ones included)
    answers: list[int] = field(default_factory=list)  # consumed one per request; then 200
    hold: threading.Event | None = None  # when set up, requests wait until it is set
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self) -> int:
        """The scripted status (200 when the script is spent)."""
        with self.lock:
            return self.answers.pop(0) if self.answers else 200


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """An HTTP receiver on 127.0.0.1 in a thread."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with state.lock:
                state.arrived += 1
            if state.hold is not None:
                state.hold.wait(60)
            with state.lock:
                state.received.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body)
                )
            status = state.next_answer()
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()
