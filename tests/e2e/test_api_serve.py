"""A scheduling system posts flights over real HTTP to `flightledger serve`; a long-running
worker subprocess syncs them; both processes' /metrics show the counts moving."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from qbo_simulator import QboSimulator, SimulatorConfig
from tests.factories import flight
from tests.helpers_qbo import EXE, Cli, cli_env, connect_via_cli, map_via_cli, spawn_worker

pytestmark = pytest.mark.timeout(180)
SCHOOL = "sunrise"
WAIT_SECONDS = 40.0


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(what: str, condition: Callable[[], Any], *procs: subprocess.Popen[str]) -> Any:
    """Poll until truthy; fail when a process died or time ran out."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            value = condition()
        except requests.ConnectionError:
            value = None
        if value:
            return value
        for proc in procs:
            assert proc.poll() is None, (
                f"process {proc.pid} exited ({proc.returncode}) waiting: {what}"
            )
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if wanted else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def sim() -> Iterator[QboSimulator]:
    """The QuickBooks simulator over loopback HTTP."""
    with QboSimulator(SimulatorConfig(minute_seconds=0.6)) as simulator:
        yield simulator


def spawn_serve(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[str]:
    """`flightledger serve --port PORT` as a subprocess."""
    with open(log_path, "a") as log:
        return subprocess.Popen(
            [EXE, "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            env={**os.environ, **env},
        )


def test_post_a_flight_over_http_and_watch_it_sync_in_the_metrics(
    db_url: str, sim: QboSimulator, tmp_path: Path
) -> None:
    """curl-like POST -> 201; the worker syncs it; serve's and the worker's /metrics move."""
    cli = Cli(cli_env(sim, db_url, SCHOOL))
    connect_via_cli(cli)
    map_via_cli(cli, {"aircraft_rental": "1", "instructor_dual": "2"}, {"S-1": "1"})
    key = cli.ok("keys", "create", "--name", "scheduler", "--permissions", "records:write")
    reader = cli.ok("keys", "create", "--name", "office", "--permissions", "billing:view")
    assert set(key) == {"id", "name", "key", "school", "permissions"}
    assert "key" not in cli.ok("keys", "list")[0]
    web, metrics_port = free_port(), free_port()
    serve = spawn_serve(cli.env, web, tmp_path / "serve.log")
    worker = spawn_worker(
        cli.env, "--metrics-port", str(metrics_port), log_path=tmp_path / "worker.log"
    )
    base = f"http://127.0.0.1:{web}"
    try:
        wait_for("serve", lambda: requests.get(f"{base}/healthz", timeout=2).ok, serve)
        wait_for(
            "worker metrics",
            lambda: requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).ok,
            worker,
        )
        before = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        auth = {"Authorization": f"Bearer {key['key']}"}
        posted = requests.post(
            f"{base}/api/v1/flights", json=flight("F-1", "S-1"), headers=auth, timeout=10
        )
        assert posted.status_code == 201, posted.text
        assert posted.json()["duplicate"] is False
        again = requests.post(
            f"{base}/api/v1/flights", json=flight("F-1", "S-1"), headers=auth, timeout=10
        )
        assert (again.status_code, again.json()["duplicate"]) == (200, True)
        office = {"Authorization": f"Bearer {reader['key']}"}

        def synced() -> bool:
            row = requests.get(f"{base}/api/v1/events/F-1", headers=office, timeout=5).json()
            return bool(row.get("status") == "synced")

        wait_for("F-1 to sync", synced, serve, worker)
        assert [i["doc_number"] for i in sim.invoices()] == ["FL-F-1"]
        after = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert sample(after, "flightledger_qbo_requests_total", outcome="ok") > sample(
            before, "flightledger_qbo_requests_total", outcome="ok"
        )
        assert sample(after, "flightledger_flight_to_invoice_seconds_count") == 1 + sample(
            before, "flightledger_flight_to_invoice_seconds_count"
        )
        served = requests.get(f"{base}/metrics", timeout=5).text
        assert sample(served, "flightledger_financial_events", school=SCHOOL, status="synced") == 1
        assert (
            sample(
                served,
                "flightledger_http_requests_total",
                route="/api/v1/flights",
                status="201",
            )
            == 1
        )
        assert sample(served, "flightledger_refresh_token_days_left", school=SCHOOL) > 14
        cli.ok("keys", "revoke", key["id"])
        refused = requests.post(
            f"{base}/api/v1/flights", json=flight("F-2", "S-1"), headers=auth, timeout=10
        )
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    finally:
        stop(worker)
        stop(serve)
