"""`worker [--until-idle] [--max-seconds N]`: project the log and push to QuickBooks."""

from __future__ import annotations

import threading

import typer
from rich.console import Console

from workers.context import EXIT_REFUSED, emit, fail, get_context
from workers.runtime import build_worker
from workers.signals import stop_on_signals
from workers.worker_loop import UNAVAILABLE_SECONDS_UNTIL_IDLE, WorkerSummary


def _work_left_message(result: WorkerSummary, wait_unavailable: float) -> str:
    """Why `worker --until-idle` stopped with work left, naming each school and its reason."""
    cause = {
        "unavailable": "QuickBooks was unavailable for every school with work for "
        f"{wait_unavailable:g} s in a row",
        "max_seconds": "--max-seconds was reached",
    }.get(result.stopped, "it stopped")
    schools = "; ".join(f"{school}: {why}" for school, why in sorted(result.left.items()))
    return (
        f"worker stopped with work left ({cause}): {schools}; nothing was lost, "
        "run the worker again later"
    )


def _left_rows(result: WorkerSummary) -> list[dict[str, str]]:
    return [{"school": s, "waiting": why} for s, why in sorted(result.left.items())]


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
        wait_unavailable: float = typer.Option(
            UNAVAILABLE_SECONDS_UNTIL_IDLE,
            "--wait-unavailable",
            min=0,
            help="With --until-idle: give up (exit 1) once QuickBooks was unavailable (open "
            "circuit, throttle) for every school with work this many seconds in a row",
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
        runtime.loop.unavailable_seconds = wait_unavailable
        stop = threading.Event()
        with stop_on_signals(stop):
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
        if result.left and result.stopped != "signal":  # --until-idle did not reach idle
            message = _work_left_message(result, wait_unavailable)
            fail(
                cli,
                message,
                EXIT_REFUSED,
                **summary,
                stopped=result.stopped,
                left=_left_rows(result),
            )

        def render(console: Console) -> None:
            parts = ", ".join(f"{k} {v}" for k, v in summary.items())
            console.print(f"worker stopped: {parts}")

        emit(cli, summary, render)
