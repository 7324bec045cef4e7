"""`flightledger serve` (local operator) against the simulator, with a `flightledger worker`
subprocess when asked: the stack the browser tests of the office day and the QuickBooks card
drive. Also the small process helpers they share (a free port, polling, stopping)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from qbo_simulator import QboSimulator, SimulatorConfig
from tests.helpers_qbo import EXE, Cli, cli_env

SCHOOL = "sunrise"
WAIT_SECONDS = 60.0
# A worker outlives no browser test (their timeouts are at most 240 s); teardown stops it first.
WORKER_MAX_SECONDS = 230


def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not exit in 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_for(what: str, condition: Callable[[], Any], *alive: subprocess.Popen[str]) -> Any:
    """Poll until truthy; fail when a subprocess died or time ran out."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for process in alive:
            assert process.poll() is None, f"{process.args!r} exited waiting for {what}"
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@dataclass
class Stack:
    """The simulator, the dashboard's URL, the CLI and (when started) the running worker."""

    url: str
    cli: Cli
    sim: QboSimulator
    worker: subprocess.Popen[str] | None
    tmp: Path


@contextmanager
def running(
    sqlite_url: str,
    tmp_path: Path,
    *,
    with_worker: bool,
    timeout: float = 2.0,
) -> Iterator[Stack]:
    """`flightledger serve` on a free port, and a worker when asked; QuickBooks calls time out
    after `timeout` seconds."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6)) as sim:
        qbo_env = cli_env(sim, sqlite_url, SCHOOL, timeout=timeout)  # one secret key for all
        env = {**os.environ, **qbo_env}
        port = free_port()
        log = (tmp_path / "serve.log").open("a")
        server = subprocess.Popen(
            [EXE, "serve", "--port", str(port)], stdout=log, stderr=log, text=True, env=env
        )
        worker = None
        if with_worker:
            worker = subprocess.Popen(
                [EXE, "--json", "worker", "--max-seconds", str(WORKER_MAX_SECONDS)],
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "worker.log").open("a"),
                text=True,
                env=env,
            )
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(url + "/healthz", timeout=5).ok
            except requests.RequestException:  # not listening yet, or still starting
                return False

        try:
            wait_for("the dashboard to answer", up, server)
            yield Stack(url, Cli(qbo_env), sim, worker, tmp_path)
        finally:
            if worker is not None:
                stop(worker)
            stop(server)
            log.close()


@contextmanager
def serving(app: Any, port: int) -> Iterator[str]:
    """Run the app with uvicorn in a thread on a loopback port; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def dashboard_in_thread(sqlite_url: str, sim_config: dict[str, Any]) -> Iterator[str]:
    """The dashboard app (local operator of SCHOOL) with the real ConnectionService, served by
    uvicorn in this process (quicker than a `serve` subprocess), against a simulator started
    with these settings (a QBO minute lasts 0.6 s unless they say otherwise)."""
    from adapters.views import open_view
    from adapters.web.app import create_app
    from adapters.web.auth import local_operator
    from workers.bootstrap import open_ledger
    from workers.projector import Projector
    from workers.qbo import ConnectionService, open_vault, qbo_settings_from_env

    port = free_port()
    ledger = open_ledger(sqlite_url)
    view = open_view(sqlite_url)
    try:
        with QboSimulator(SimulatorConfig(**({"minute_seconds": 0.6} | sim_config))) as sim:
            env = cli_env(sim, sqlite_url, SCHOOL) | {
                "FLIGHTLEDGER_QBO_REDIRECT_URI": f"http://127.0.0.1:{port}/qbo/callback"
            }
            settings = qbo_settings_from_env(env)
            service = ConnectionService(ledger, open_vault(sqlite_url, env, False), settings)
            app = create_app(
                ledger=ledger,
                view=view,
                refresh_view=Projector(ledger, view).catch_up,
                session_key=os.urandom(32),
                connections=service,
                local_user=local_operator(SCHOOL),
                authorization_origins=("https://appcenter.intuit.com", sim.url),
            )
            with serving(app, port) as url:
                yield url
    finally:
        view.close()
        ledger.close()
