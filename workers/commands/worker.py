"""`worker [--until-idle] [--max-seconds N]`: project the log and push to QuickBooks."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from workers.context import EXIT_REFUSED, emit, fail, get_context
from workers.runtime import build_worker


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set stop while the worker runs; the old handlers come back after.

    Restoring matters when the command runs inside another program (tests, an embedding
    service): a handler left behind would keep that program's children alive on SIGTERM.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    """Add `worker`."""

    @app.command("worker")
    def worker(
        ctx: typer.Context,
        until_idle: bool = typer.Option(
            False, "--until-idle", help="Exit once nothing is left to do for any school"
        ),
        max_seconds: float | None = typer.Option(
            None, "--max-seconds", min=0, help="Stop after this many seconds"
        ),
        metrics_port: int | None = typer.Option(
            None,
            "--metrics-port",
            min=1,
            max=65535,
            help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics while running",
        ),
    ) -> None:
        """Keep the view caught up and push every school's waiting events to QuickBooks."""
        cli = get_context(ctx)
        runtime = build_worker(cli.ledger(), cli.config)
        cli.closers.append(runtime.close)
        if metrics_port is not None:
            from adapters.metrics import serve_metrics, view_reading

            server = serve_metrics(metrics_port, view_reading(cli.ledger(), runtime.projector.view))
            cli.closers.append(server.shutdown)
        stop = threading.Event()
        with _stop_on_signals(stop):
            result = runtime.loop.run(until_idle=until_idle, max_seconds=max_seconds, stop=stop)
        summary = result.as_dict()
        if not result.healthy:  # every pass crashed: say so and exit 1, never "pending 600"
            fail(
                cli,
                f"worker unhealthy: every pass crashed ({result.error}); "
                "nothing was lost, fix the cause and start the worker again",
                EXIT_REFUSED,
                **summary,
            )

        def render(console: Console) -> None:
            parts = ", ".join(f"{k} {v}" for k, v in summary.items())
            console.print(f"worker stopped: {parts}")

        emit(cli, summary, render)
